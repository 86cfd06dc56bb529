"""Contract over the method table: every family's public entry points on a bf16 SmolLM2.

Each entry either returns a result whose numbers are finite, or raises a
:class:`~mechinterp.errors.MechinterpError` saying it needs more precision: never a raw
torch error (the dtype ``RuntimeError``\\ s that a bf16 model used to give). No hook is
left on the model either way. Inputs are tiny (a 4-prompt IOI task, a 5-token fact
prompt, a few layers) to keep the tier fast; each family's own tests check the numbers.
"""

from __future__ import annotations

import math

import pytest
import torch

import mechinterp
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import MechinterpError

pytestmark = pytest.mark.real

FACT, ANSWER = "The capital of France is", " Paris"


def _finite(result) -> bool:
    """Every float tensor / number reachable in a result (dataclass fields, dicts, lists) is finite."""
    seen = 0

    def walk(x, depth=0) -> bool:
        nonlocal seen
        if depth > 4:
            return True
        if isinstance(x, torch.Tensor):
            seen += 1
            return not x.is_floating_point() or bool(torch.isfinite(x[~torch.isnan(x)]).all()) and not bool(torch.isnan(x).all())
        if isinstance(x, float):
            seen += 1
            return not math.isinf(x)
        if isinstance(x, dict):
            return all(walk(v, depth + 1) for v in x.values())
        if isinstance(x, (list, tuple)):
            return all(walk(v, depth + 1) for v in x[:50])
        if hasattr(x, "__dataclass_fields__"):
            return all(walk(getattr(x, f), depth + 1) for f in x.__dataclass_fields__)
        return True

    ok = walk(result)
    return ok and seen > 0


def _last_logit(logits):
    """The first token's logit at the last position ``[batch]`` (a metric any prompt has)."""
    return logits[:, -1, 0].float()


def _table(model, task):
    from mechinterp import attention, attribution, circuits, patching, probes

    few = dict(layers=[0, 14, 29])
    one = task.subset([0])  # causal tracing restores every layer x position: one short prompt keeps bf16-on-CPU short
    table = {
        "attention.attention_patterns": lambda: attention.attention_patterns(model, FACT, layers=[0, 29]),
        "attention.head_scores": lambda: attention.head_scores(model, FACT, kinds=["previous_token"]),
        "attention.attention_rollout": lambda: attention.attention_rollout(model, FACT, sink="first"),
        "attention.attention_flow": lambda: attention.attention_flow(model, FACT, queries=[-1], sink="first", start_layer=27),
        "attention.gradient_rollout": lambda: attention.gradient_rollout(model, FACT, target=ANSWER, sink="first"),
        "patching.activation_patch": lambda: patching.activation_patch(model, task, site="resid_pre", **few),
        "patching.activation_patch[z, head]": lambda: patching.activation_patch(model, task, site="z", by="head", **few),
        "patching.path_patch": lambda: patching.path_patch(model, task, senders=[(29, 0), (29, 1)]),
        "patching.causal_trace": lambda: patching.causal_trace(model, one.clean_tokens[:, :6], [1], _last_logit, n_samples=1, window=1),
        "patching.attribution_patch": lambda: patching.attribution_patch(model, task, sites="resid_pre"),
        "circuits.discover[eap]": lambda: circuits.discover(model, task, method="eap", top_n=20),
        "circuits.discover[eap-ig-inputs]": lambda: circuits.discover(model, task, method="eap-ig-inputs", top_n=20, steps=2),
        "probes.probe_sweep": lambda: probes.probe_sweep(
            probes.from_task(model, task, sorted(task.ground_truth.labels)[0], layers=[2, 20]), controls=False, cv=None
        ),
    }
    for name in attribution.method_names():
        options = {"n_steps": 4} if name in ("ig", "integrated_gradients", "sequential_ig", "sig") else {}
        table[f"attribution.{name}"] = lambda name=name, options=options: attribution.attribute(
            model, FACT, ANSWER, method=name, **options
        )
    return table


@pytest.fixture(scope="module")
def bf16_task(smollm2_bf16):
    return mechinterp.tasks.load("ioi", smollm2_bf16, n=4, seed=0)


def _names():
    # the table's keys without building a model: attribution methods are read from the registry
    from mechinterp import attribution

    fixed = [
        "attention.attention_patterns", "attention.head_scores", "attention.attention_rollout", "attention.attention_flow",
        "attention.gradient_rollout", "patching.activation_patch", "patching.activation_patch[z, head]",
        "patching.path_patch", "patching.causal_trace", "patching.attribution_patch", "circuits.discover[eap]",
        "circuits.discover[eap-ig-inputs]", "probes.probe_sweep",
    ]
    return fixed + [f"attribution.{n}" for n in attribution.method_names()]


@pytest.mark.parametrize("entry", _names())
def test_bf16_entry_point_gives_a_result_or_a_clear_error(entry, smollm2_bf16, bf16_task):
    call = _table(smollm2_bf16, bf16_task)[entry]
    try:
        result = call()
    except MechinterpError as err:  # allowed: a method that needs more precision says so
        assert "precision" in str(err).lower() or "float32" in str(err) or "bf16" in str(err).lower(), str(err)
    else:
        assert _finite(result), f"{entry} returned non-finite numbers on bf16"
    finally:
        assert_no_hooks(smollm2_bf16)
    assert smollm2_bf16.cfg.dtype == torch.bfloat16
