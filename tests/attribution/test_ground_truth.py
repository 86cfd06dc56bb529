"""On zoo:toy-lm (trained; mechanism known by construction): completeness and ground-truth hits.

Skipped until ``zoo:toy-lm`` and its tasks exist.
"""

from __future__ import annotations

import pytest

import mechinterp

pytestmark = pytest.mark.skipif("toy-lm" not in mechinterp.zoo.names(), reason="zoo:toy-lm is not trained yet")


@pytest.fixture(scope="module")
def toy_lm():
    return mechinterp.load("zoo:toy-lm")


def test_ig_completeness_on_toy_lm_prompts(toy_lm):
    from mechinterp.attribution import Contrast, attribute

    task = mechinterp.tasks.load("facts", toy_lm, n=4, seed=0)
    for i in range(len(task)):
        tokens = task.clean_tokens[i, : int(task.lengths[i])]
        res = attribute(toy_lm, tokens, Contrast(int(task.correct_tokens[i]), int(task.wrong_tokens[i])), method="ig",
                        n_steps=64, rule="gausslegendre", baseline="pad", warn=False)
        assert res.metadata["relative_delta"][0] < 0.01
    deltas = [abs(attribute(toy_lm, tokens, Contrast(int(task.correct_tokens[i]), int(task.wrong_tokens[i])), method="ig",
                            n_steps=n, rule="riemann_right", warn=False).metadata["convergence_delta"][0]) for n in (4, 16, 64)]
    assert deltas[0] > deltas[2]


@pytest.mark.parametrize("task_name", ["facts", "sentiment", "greater-than"])
def test_adaptive_ig_completeness_under_one_percent_on_every_task(toy_lm, task_name):
    """Fixed 64-node Gauss–Legendre misses 1% on some sentiment / greater-than prompts (the integrand
    has a sharp attention switch near α = 0.77); the adaptive rule bisects there and meets it."""
    from mechinterp.attribution import Contrast, attribute

    task = mechinterp.tasks.load(task_name, toy_lm, n=8, seed=0)
    for i in range(len(task)):
        tokens = task.clean_tokens[i, : int(task.lengths[i])]
        res = attribute(toy_lm, tokens, Contrast(int(task.correct_tokens[i]), int(task.wrong_tokens[i])), method="ig",
                        rule="adaptive", n_steps=256, baseline="pad", warn=False)
        assert res.metadata["relative_delta"][0] < 0.01, (task_name, i, res.metadata["relative_delta"])
        assert res.metadata["n_gradient_rows"] <= 256


@pytest.mark.parametrize("method", [
    pytest.param("integrated_gradients", marks=pytest.mark.xfail(strict=True, reason=(
        "IG with any neutral baseline (zero, pad, unk, mean embedding, expected gradients) ranks a template word "
        "first on toy-lm facts: the template routes the country's information (a layer-3 head switches to the "
        "country at alpha ~0.77) and IG credits the routing; the 90% bar is met only with a counterfactual "
        "baseline (see benchmarks/results/attribution.md)"))),
    "cp_lrp",
])
def test_ig_and_lrp_find_the_country_on_facts(toy_lm, method):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from attribution_ground_truth import hit_rates

    rate = hit_rates(toy_lm, "facts", 20, [method])[method]["hit_rate"]
    assert rate >= 0.9


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


def test_attn_lrp_mostly_finds_the_country_on_facts(toy_lm):
    """AttnLRP reached 83% on 30 prompts (below the 90% bar; CP-LRP reaches 100%) and equals LXT's rule code
    (benchmarks/attribution_lrp_vs_lxt.py): the misses rank the final 'is'/'called' first, which keeps its own
    residual path while each attention hop gives half its relevance to the pattern. Guard against regressions."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from attribution_ground_truth import hit_rates

    assert hit_rates(toy_lm, "facts", 20, ["attn_lrp"])["attn_lrp"]["hit_rate"] >= 0.7
