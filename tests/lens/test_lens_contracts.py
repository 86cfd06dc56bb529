"""Contracts across the lens and features families: every method leaves no hooks, on good and
bad input, and every result round-trips through JSON and renders offline."""

from __future__ import annotations

import pytest
import torch

from mechinterp import features, lens
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError

PROMPTS = ["The capital of France is", "Review : the food was great . Sentiment :"]


def _vector(model):
    return lens.SteeringVector.from_direction(model, torch.ones(model.cfg.d_model), layer=1)


METHODS = {
    "logit_lens": (lambda m: lens.logit_lens(m, PROMPTS, answers="Paris"), lambda m: lens.logit_lens(m, PROMPTS, answers="nope-word")),
    "dla": (lambda m: lens.direct_logit_attribution(m, PROMPTS, "Paris"), lambda m: lens.direct_logit_attribution(m, PROMPTS, ["a", "b", "c"])),
    "steering_sweep": (lambda m: lens.steering_sweep(m, PROMPTS, {1: _vector(m)}, [1.0], target="positive", other="negative"),
                       lambda m: lens.steering_sweep(m, PROMPTS, {1: _vector(m)}, [1.0], target="positive", other="nope-word")),
    "max_activating_examples": (lambda m: features.max_activating_examples(m, PROMPTS, features.neuron(m, 1, 3), k=2),
                                lambda m: features.max_activating_examples(m, PROMPTS, features.neuron(m, 1, 3), k=-1)),
    "optimise_input": (lambda m: features.optimise_input(m, features.neuron(m, 1, 3), length=1, steps=2, n_candidates=4),
                       lambda m: features.optimise_input(m, features.neuron(m, 1, 3), length=1, allowed=[10**6])),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_no_hooks_left_and_results_round_trip(toy_lm, name, tmp_path):
    good, bad = METHODS[name]
    result = good(toy_lm)
    assert_no_hooks(toy_lm)
    assert isinstance(result, AbstractResult)
    back = type(result).load(result.save(tmp_path / "r.json"))
    assert back.to_dict().keys() == result.to_dict().keys()
    html = result.to_html()
    assert "<script src" not in html and "http://" not in html and "https://" not in html
    with pytest.raises(MechinterpError):
        bad(toy_lm)
    assert_no_hooks(toy_lm)


def test_from_direction_checks_its_size(toy_lm):
    with pytest.raises(MechinterpError, match="d_model"):
        lens.SteeringVector.from_direction(toy_lm, torch.ones(3), layer=1)
