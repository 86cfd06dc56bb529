"""Old names keep working for one release, each with a DeprecationWarning naming the new one."""

from __future__ import annotations

import warnings

import pytest
import torch

from mechinterp.core.deprecation import RENAMED, deprecated_alias, renamed_keyword
from mechinterp.errors import MechinterpError

PROMPTS = ["w1 w2 w3 w4", "w5 w6 w7 w8", "w2 w3 w4 w5", "w9 w1 w2 w3"]


def _warns(fn, new_name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    hits = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert hits and new_name in str(hits[0].message), [str(w.message) for w in caught]
    return out


def test_helpers():
    old = deprecated_alias(lambda x: 2 * x, "old", "new")
    assert _warns(lambda: old(3), "new") == 6
    assert renamed_keyword("a", None, "old", "new") == "a"
    assert _warns(lambda: renamed_keyword("last", "all", "old", "new", default="last"), "new=") == "all"
    with pytest.raises(MechinterpError, match="new= only"):
        renamed_keyword("x", "y", "old", "new")


def test_renamed_functions_still_work(tiny_model):
    from mechinterp import attribution, circuits
    from mechinterp.attribution import base
    from mechinterp.patching import inputs

    prep = _warns(lambda: base.prepare(tiny_model, "w1 w2 w3", "w4"), "prepare_prompt")
    assert torch.equal(prep.tokens, base.prepare_prompt(tiny_model, "w1 w2 w3", "w4").tokens)
    tokens = tiny_model.to_tokens(PROMPTS)
    metric = lambda logits: logits[:, -1, 5]  # noqa: E731
    old_inputs = _warns(lambda: inputs.prepare(tiny_model, tokens, tokens.flip(0), metric), "prepare_patch_inputs")
    assert torch.equal(old_inputs.clean, inputs.prepare_patch_inputs(tiny_model, tokens, tokens.flip(0), metric).clean)
    setup = _warns(lambda: circuits.prepare(tiny_model, tokens, ablation="zero"), "prepare_edge_patching")
    assert torch.equal(setup.clean, circuits.prepare_edge_patching(tiny_model, tokens, ablation="zero").clean)
    assert _warns(lambda: attribution.Metric, "MetricTarget") is attribution.MetricTarget


def test_renamed_keywords_still_work(tiny_model):
    from mechinterp.patching import causal_trace
    from mechinterp.probes import collect_activations

    labels = [0, 1, 0, 1]
    new = collect_activations(tiny_model, PROMPTS, labels, positions=[1, 2], progress=False)
    old = _warns(lambda: collect_activations(tiny_model, PROMPTS, labels, position=[1, 2], progress=False), "positions=")
    torch.testing.assert_close(old.x(layer=1, position=1), new.x(layer=1, position=1))
    with pytest.raises(MechinterpError, match="positions= only"):
        collect_activations(tiny_model, PROMPTS, labels, positions="all", position=[1], progress=False)
    tokens = tiny_model.to_tokens(PROMPTS)
    metric = lambda logits: logits[:, -1, 5]  # noqa: E731
    kw = dict(metric=metric, n_samples=2, seed=0)
    want = causal_trace(tiny_model, tokens, [1, 2], **kw)
    got = _warns(lambda: causal_trace(tiny_model, tokens, subject_positions=[1, 2], **kw), "positions=")
    torch.testing.assert_close(got.values, want.values)


def test_every_rename_is_listed():
    assert all(new.startswith("mechinterp.") for new in RENAMED.values()) and len(RENAMED) >= 8
