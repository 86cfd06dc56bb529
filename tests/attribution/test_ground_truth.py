"""On zoo:toy-lm (trained; mechanism known by construction): completeness and ground-truth hits.

Skipped until ``zoo:toy-lm`` and its tasks exist.
"""

from __future__ import annotations

import pytest
import torch

import mechinterp


@pytest.fixture(scope="module")
def toy_lm():
    return mechinterp.load("zoo:toy-lm")


def test_ig_completeness_on_toy_lm_prompts(toy_lm):
    """Issue #5's completeness bar with the pad baseline (toy-lm's absence baseline): < 1% at 64 Gauss–Legendre
    steps (largest relative delta 4.3e-5 over 72 facts/sentiment/greater-than prompts); the delta shrinks with steps."""
    from mechinterp.attribution import Contrast, attribute

    task = mechinterp.tasks.load("facts", toy_lm, n=4, seed=0)
    for i in range(len(task)):
        tokens = task.clean_tokens[i, : int(task.lengths[i])]
        res = attribute(toy_lm, tokens, Contrast(int(task.correct_tokens[i]), int(task.wrong_tokens[i])), method="ig",
                        n_steps=64, rule="gausslegendre", baseline="pad", warn=False)
        assert res.metadata["relative_delta"][0] < 0.01
    deltas = [abs(attribute(toy_lm, tokens, Contrast(int(task.correct_tokens[i]), int(task.wrong_tokens[i])), method="ig",
                            n_steps=n, rule="riemann_right", baseline="pad", warn=False).metadata["convergence_delta"][0])
              for n in (4, 16, 64)]
    assert deltas[0] > deltas[2]


@pytest.mark.parametrize("task_name", ["facts", "sentiment", "greater-than"])
def test_adaptive_ig_completeness_under_one_percent_on_every_task(toy_lm, task_name):
    """Zero baseline, where the integrand is sharp: on the straight path from zero embeddings dF/dα peaks at α ≈ 0.6–0.7
    (median; on facts two layer-3 heads switch to the country there), up to ~260 against a median of 1–6. Fixed 64-node Gauss–Legendre
    misses 1% on 2 of these 8 sentiment and 2 of these 8 greater-than prompts (7 of 72 at n=24); the adaptive rule
    bisects there and meets it. (With the pad baseline the integrand is smooth: 64 nodes suffice on all 72.)"""
    from mechinterp.attribution import Contrast, attribute

    task = mechinterp.tasks.load(task_name, toy_lm, n=8, seed=0)
    for i in range(len(task)):
        tokens = task.clean_tokens[i, : int(task.lengths[i])]
        res = attribute(toy_lm, tokens, Contrast(int(task.correct_tokens[i]), int(task.wrong_tokens[i])), method="ig",
                        rule="adaptive", n_steps=256, baseline="zero", warn=False)
        assert res.metadata["relative_delta"][0] < 0.01, (task_name, i, res.metadata["relative_delta"])
        assert res.metadata["n_gradient_rows"] <= 256


def _facts_hit_rate(model, method: str, n: int = 20) -> float:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from attribution_ground_truth import hit_rates

    return hit_rates(model, "facts", n, [method])[method]["hit_rate"]


@pytest.mark.parametrize("method", ["integrated_gradients", "attn_lrp", "cp_lrp"])
def test_ig_and_lrp_find_the_country_on_facts(toy_lm, method):
    """Issue #5's bar: IG and LRP rank the country first on >= 90% of facts prompts (20 here).

    IG runs with the pad baseline (the benchmark's ``METHOD_OPTIONS``): toy-lm was trained with template-word
    dropout, so ``<pad>`` is the model's own "missing word". Measured at n=20: IG (pad) 100%, AttnLRP 100%,
    CP-LRP 100% (n=30: 100%, 93%, 100%; benchmarks/results/attribution.md)."""
    assert _facts_hit_rate(toy_lm, method) >= 0.9


def test_ig_with_the_zero_baseline_does_not_find_the_country_on_facts(toy_lm):
    """Captum's default (zero baseline) is off-distribution for toy-lm: on the straight path from
    zero embeddings the layer-3 heads switch to the country only at alpha ~0.65-0.8 and IG credits the template words
    that drive the switch ("The" first on most prompts; 0% at n=30). If this starts passing, the zero baseline's
    behaviour changed and the docs' advice (use the pad baseline on toy-lm) needs re-checking."""
    assert _facts_hit_rate(toy_lm, "ig, zero baseline (captum's default)") <= 0.2


def test_ig_with_a_counterfactual_baseline_finds_the_country_on_facts(toy_lm):
    """With the task's corrupted prompt as baseline, IG is nonzero only where the prompts differ; the country must
    get positive credit for the logit difference (fails if the sign or the path were wrong)."""
    from mechinterp.attribution import Contrast, attribute

    task = mechinterp.tasks.load("facts", toy_lm, n=10, seed=0)
    hits = 0
    for i in range(len(task)):
        n = int(task.lengths[i])
        res = attribute(toy_lm, task.clean_tokens[i, :n], Contrast(int(task.correct_tokens[i]), int(task.wrong_tokens[i])),
                        method="ig", baseline=task.corrupted_tokens[i, :n], n_steps=32, warn=False)
        row = res.scores[0].clone()
        row[0] = -float("inf")
        hits += int(int(row.argmax()) in task.ground_truth.positions[i])
    assert hits / len(task) >= 0.9


def test_default_baseline_is_the_models_own_missing_word(toy_lm):
    """``baseline="auto"`` (the default) reads ``absence_token`` from the zoo model's attribution.json: on toy-lm
    the default IG is the pad-baseline IG (the docs' advice), and the perturbation methods replace with <pad>."""
    from mechinterp.attribution import attribute
    from mechinterp.core.loading import model_info

    assert model_info(toy_lm)["absence_token"] == "pad"
    task = mechinterp.tasks.load("facts", toy_lm, n=2, seed=0)
    prompt, answer = task.clean_tokens[0, : int(task.lengths[0])], int(task.correct_tokens[0])
    default = attribute(toy_lm, prompt, answer, method="ig", n_steps=16, warn=False).scores
    pad = attribute(toy_lm, prompt, answer, method="ig", baseline="pad", n_steps=16, warn=False).scores
    mean = attribute(toy_lm, prompt, answer, method="ig", baseline="mean", n_steps=16, warn=False).scores
    torch.testing.assert_close(default, pad)
    assert not torch.allclose(default, mean)
    occ = attribute(toy_lm, prompt, answer, method="occlusion").scores
    torch.testing.assert_close(occ, attribute(toy_lm, prompt, answer, method="occlusion", replacement="pad").scores)
