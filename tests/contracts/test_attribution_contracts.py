"""Contract over every registered attribution method: shapes, targets, bad input, no hooks left."""

from __future__ import annotations

import pytest
import torch

from mechinterp.attribution import METHODS, Continuation, MetricTarget, attribute
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import EmptyInputError, MechinterpError, MultiTokenAnswerError, PromptTooLongError

FAST = {"integrated_gradients": {"n_steps": 4}, "kernel_shap": {"n_samples": 64}, "lime": {"n_samples": 32}}
PROMPT = "w1 w2 w3 w4"


@pytest.fixture(params=sorted(METHODS))
def method(request):
    return request.param


def test_good_input_shapes_and_no_hooks(tiny_model, method):
    res = attribute(tiny_model, PROMPT, "w5", method=method, warn=False, **FAST.get(method, {}))
    assert res.scores.shape == (1, 5) and torch.isfinite(res.scores).all() and res.method == method
    assert_no_hooks(tiny_model)
    multi = attribute(tiny_model, PROMPT, Continuation("w5 w6"), method=method, warn=False, **FAST.get(method, {}))
    assert multi.scores.shape == (2, 5)
    assert_no_hooks(tiny_model)


@pytest.mark.parametrize("prompt,target,error", [
    (PROMPT, "w5 w6", MultiTokenAnswerError),
    ("", "w5", EmptyInputError),
    (" ".join(["w1"] * 30), "w5", PromptTooLongError),
])
def test_bad_input_raises_and_leaves_no_hooks(tiny_model, method, prompt, target, error):
    with pytest.raises(error):
        attribute(tiny_model, prompt, target, method=method, **FAST.get(method, {}))
    assert_no_hooks(tiny_model)


def test_error_inside_the_forward_pass_leaves_no_hooks(tiny_model, method):
    calls = {"n": 0}

    def flaky(logits):
        calls["n"] += 1
        if calls["n"] > 1:  # the first call (binding the target) succeeds; the method's own pass fails
            raise MechinterpError("metric failed")
        return logits[:, -1, 5]

    with pytest.raises(MechinterpError, match="metric failed"):
        attribute(tiny_model, PROMPT, MetricTarget(flaky), method=method, warn=False, **FAST.get(method, {}))
    assert_no_hooks(tiny_model)


@pytest.fixture(scope="module", params=[torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def half_model(request, tiny_model):
    import copy

    return copy.deepcopy(tiny_model).to(request.param, print_details=False)


def test_half_precision_models_run_every_method_and_keep_its_guarantee(half_model, tiny_model, method):
    """Every method runs on a bf16/fp16 model (no raw torch error, finite scores, no hooks left), close to the fp32
    model's scores; IG keeps completeness (float32 sum) and exact Shapley efficiency (float64 sum of the values)."""
    opts = {**FAST.get(method, {}), **({"n_steps": 64, "baseline": "pad"} if method == "integrated_gradients" else {})}
    target = ("w5", "w6")
    res = attribute(half_model, PROMPT, target, method=method, warn=False, **opts)
    ref = attribute(tiny_model, PROMPT, target, method=method, warn=False, **opts)
    assert res.scores.dtype == torch.float32 and torch.isfinite(res.scores).all()
    assert_no_hooks(half_model)
    scale = float(ref.scores.abs().max())
    torch.testing.assert_close(res.scores, ref.scores, atol=0.06 * scale, rtol=0)  # half precision: 8 (bf16) or 11 (fp16) significant bits
    if method == "integrated_gradients":
        assert res.metadata["relative_delta"][0] < 0.01
    if method == "shapley":
        assert abs(res.metadata["efficiency_gap"][0]) < 1e-9
