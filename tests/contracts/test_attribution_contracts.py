"""Contract over every registered attribution method: shapes, targets, bad input, no hooks left."""

from __future__ import annotations

import pytest
import torch

from mechinterp.attribution import METHODS, Continuation, Metric, attribute
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
        attribute(tiny_model, PROMPT, Metric(flaky), method=method, warn=False, **FAST.get(method, {}))
    assert_no_hooks(tiny_model)
