"""Contract over every registered circuit scorer: good input, bad input, no hooks left, config restored."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.circuits import SCORERS, discover, faithfulness, patch_edges, prepare, setup_for
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import EmptyInputError, MechinterpError, NonFiniteError, PromptTooLongError, ShapeMismatchError

FAST = {"acdc": {"thresholds": [0.01, 0.1]}, "eap-ig-inputs": {"steps": 2}, "eap-ig-activations": {"steps": 2}}


@pytest.fixture(scope="module")
def task(tiny_model):
    return mechinterp.tasks.load("induction", tiny_model, n=3, seed=0, seq_len=4)


def _clean(model):
    assert_no_hooks(model)
    assert not model.cfg.use_split_qkv_input and not model.cfg.use_hook_mlp_in


@pytest.mark.parametrize("method", sorted(SCORERS))
def test_good_input(tiny_model, task, method):
    c = discover(tiny_model, task, method, "corrupted", **FAST.get(method, {}))
    g = c.graph
    assert c.scores.shape == g.real.shape and torch.isfinite(c.scores).all() and (c.scores[~g.real] == 0).all()
    assert c.method == method
    _clean(tiny_model)


class _BadTask:
    def __init__(self, task, **changes):
        self.__dict__.update(task.__dict__)
        self.__dict__.update(changes)
        self.name = "bad"

    def metric(self, logits):
        return self._metric(logits) if "_metric" in self.__dict__ else self.__dict__["metric_fn"](logits)


@pytest.mark.parametrize("method", sorted(SCORERS))
def test_bad_input_raises_and_leaves_no_hooks(tiny_model, task, method):
    opts = FAST.get(method, {})
    with pytest.raises(ShapeMismatchError):
        discover(tiny_model, _BadTask(task, corrupted_tokens=task.corrupted_tokens[:, :-1]), method, **opts)
    with pytest.raises(PromptTooLongError):
        long = torch.ones(2, 40, dtype=torch.long)
        discover(tiny_model, _BadTask(task, clean_tokens=long, corrupted_tokens=long), method, **opts)
    with pytest.raises(EmptyInputError):
        empty = torch.zeros(0, 5, dtype=torch.long)
        discover(tiny_model, _BadTask(task, clean_tokens=empty, corrupted_tokens=empty), method, **opts)
    nan_task = _BadTask(task, _metric=lambda logits: logits[:, -1, 0] * float("nan"))
    with pytest.raises(MechinterpError):  # NonFiniteError from gradients, undefined faithfulness / NaN scores otherwise
        discover(tiny_model, nan_task, method, **{**opts, **({"distance": "metric"} if method == "acdc" else {})})
    with pytest.raises(MechinterpError, match="does not take"):
        discover(tiny_model, task, method, bogus=1)
    _clean(tiny_model)


def test_unknown_method_ablation_and_bad_masks(tiny_model, task):
    with pytest.raises(MechinterpError, match="Unknown circuit method"):
        discover(tiny_model, task, "magic")
    with pytest.raises(MechinterpError, match="Unknown ablation"):
        discover(tiny_model, task, "eap", "shuffle")
    with pytest.raises(MechinterpError):
        discover(tiny_model, None, "eap")
    setup = setup_for(tiny_model, task, "zero")
    with pytest.raises(NonFiniteError):
        patch_edges(tiny_model, setup, torch.full(setup.graph.real.shape, float("inf")))
    with pytest.raises(MechinterpError, match="faithfulness is undefined"):
        faithfulness(tiny_model, setup, lambda logits: logits[:, 0, 0] * 0, setup.graph.real)
    with pytest.raises(MechinterpError, match="Resample"):
        prepare(tiny_model, task.clean_tokens[:1], ablation="resample")
    _clean(tiny_model)
