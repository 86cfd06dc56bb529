"""Contract for every attention method: results serialise and render; bad input raises a
MechinterpError; no hook is left on the model, after success or after an error."""

from __future__ import annotations

import json

import pytest
import torch

from mechinterp.attention import (
    attention_flow,
    attention_patterns,
    attention_rollout,
    external_references,
    gradient_rollout,
    head_scores,
)
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError

GOOD = ["w1 w2 w3 w1 w2", "w4 w5 w4"]
TOO_LONG = " ".join(["w1"] * 40)


def _raise_in_metric(logits):
    raise MechinterpError("failing target function")


# name -> (call on good input, list of bad calls)
METHODS = {
    "attention_patterns": (
        lambda m: attention_patterns(m, GOOD[0]),
        [lambda m: attention_patterns(m, []), lambda m: attention_patterns(m, TOO_LONG),
         lambda m: attention_patterns(m, GOOD[0], layers=[7]), lambda m: attention_patterns(m, "   ")],
    ),
    "head_scores": (
        lambda m: head_scores(m, GOOD),
        [lambda m: head_scores(m, []), lambda m: head_scores(m, [TOO_LONG]), lambda m: head_scores(m, GOOD, kinds=["x"]),
         lambda m: head_scores(m, n_probes=0)],
    ),
    "attention_rollout": (
        lambda m: attention_rollout(m, GOOD, head_fusion="max"),
        [lambda m: attention_rollout(m, []), lambda m: attention_rollout(m, [TOO_LONG]),
         lambda m: attention_rollout(m, GOOD, head_fusion="sum"), lambda m: attention_rollout(m, GOOD, query=9),
         lambda m: attention_rollout(m, GOOD, start_layer=2)],
    ),
    "attention_flow": (
        lambda m: attention_flow(m, GOOD, queries=[-1]),
        [lambda m: attention_flow(m, []), lambda m: attention_flow(m, GOOD, max_positions=3),
         lambda m: attention_flow(m, GOOD, queries=[10])],
    ),
    "gradient_rollout": (
        lambda m: gradient_rollout(m, GOOD, target="w2"),
        [lambda m: gradient_rollout(m, []), lambda m: gradient_rollout(m, [TOO_LONG]),
         lambda m: gradient_rollout(m, GOOD, target="w1 w2"), lambda m: gradient_rollout(m, GOOD, target=_raise_in_metric),
         lambda m: gradient_rollout(m, GOOD, target=torch.tensor([1, 2, 3]))],
    ),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_good_input_gives_a_serialisable_result(tiny_model, name):
    result = METHODS[name][0](tiny_model)
    assert_no_hooks(tiny_model)
    assert isinstance(result, AbstractResult)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["type"] == type(result).__name__ and "method" in data and "parameters" in data
    back = type(result).from_dict(data)
    assert json.dumps(back.to_dict()) == json.dumps(data)
    html = result._repr_html_()
    assert html and external_references(html) == []
    assert result.plot() is not None
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize("name", list(METHODS))
def test_bad_input_raises_and_leaves_no_hooks(tiny_model, name):
    for i, bad in enumerate(METHODS[name][1]):
        with pytest.raises(MechinterpError) as err:
            bad(tiny_model)
        assert len(str(err.value)) > 20, (name, i, str(err.value))  # says what to do, not just "bad"
        assert_no_hooks(tiny_model)


def test_nan_weights_raise_nonfinite(tiny_model):
    from mechinterp.errors import NonFiniteError

    w = tiny_model.blocks[0].attn.W_Q
    saved = w.detach().clone()
    try:
        with torch.no_grad():
            w[0, 0, 0] = float("nan")
        for call in (lambda: attention_rollout(tiny_model, GOOD), lambda: head_scores(tiny_model, GOOD),
                     lambda: gradient_rollout(tiny_model, GOOD, target="w2")):
            with pytest.raises(NonFiniteError):
                call()
            assert_no_hooks(tiny_model)
    finally:
        with torch.no_grad():
            w.copy_(saved)
