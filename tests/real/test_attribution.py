"""Input attribution on SmolLM2-135M-Instruct: ground truth on fact prompts, IG well posed, half precision.

Fact prompts "The capital of <country> is" -> " <capital>" that the model answers (top-1),
single-token country and capital (``benchmarks/attribution_real.py::fact_prompts``). The
contrastive target is the answer's logit minus the next prompt's capital, so what the template
words do to every capital cancels. Numbers in the docstrings: benchmarks/results/attribution.md,
"Real model: SmolLM2-135M".
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch

from mechinterp.attribution import CompletenessWarning, Contrast, attribute, ig_convergence

pytestmark = pytest.mark.real

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from attribution_real import TEMPLATE, fact_prompts  # noqa: E402


@pytest.fixture(scope="module")
def facts(smollm2):
    kept = fact_prompts(smollm2, n=10)
    assert len(kept) == 10, "SmolLM2 should answer at least 10 of the candidate capitals"
    return kept


def _hit_rate(model, facts, method, contrast=True, **options):
    hits = 0
    for fact in facts:
        target = Contrast(fact["answer"], fact["wrong"]) if contrast else fact["answer"]
        opts = {k: (v(fact) if callable(v) else v) for k, v in options.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CompletenessWarning)
            res = attribute(model, fact["prompt"], target, method=method, warn=False, **opts)
        hits += int(res.scores[0].argmax()) == fact["subject"]
    return hits / len(facts)


@pytest.mark.parametrize("method", ["occlusion", "shapley"])
def test_perturbation_methods_find_the_subject_with_a_contrast(smollm2, facts, method):
    """Mean-embedding replacement (the default): 9/10 each (occlusion misses Russia -> " capital", Shapley England ->
    " is"). With the pad token (<|im_end|>, an end-of-turn token on this chat model) they reach 4-5 of 12."""
    assert _hit_rate(smollm2, facts, method) >= 0.9


def test_ig_finds_the_subject_with_a_contrast(smollm2, facts):
    """The contrastive question in IG's own terms: the baseline is the same template with the other country (whose
    capital the contrast subtracts), so IG explains F(x) - F(x_other) and only the subject moves: 10/10. Its sign is
    what is tested: the subject must get positive credit. Task-agnostic baselines split the contrast between the
    subject and " capital"/" of" (they interact): the default mean embedding reaches 7/10, well above captum's zero
    baseline with the first token moving (4/10)."""
    other = lambda fact: smollm2.to_tokens(TEMPLATE.format(fact["wrong_country"]))[0]  # noqa: E731
    assert _hit_rate(smollm2, facts, "ig", baseline=other, n_steps=16) >= 0.9
    assert _hit_rate(smollm2, facts[:5], "ig", n_steps=32) >= 0.6  # default baseline: 3/5 on these five (32 steps)


def test_sequential_ig_finds_the_subject_with_a_task_agnostic_baseline(smollm2, facts):
    """Sequential IG (one token's path at a time, mean-embedding baseline, 64 steps): each token's sum is its
    leave-one-out drop, so it ranks like occlusion (58/63 over three templates, BENCHMARKS.md), where
    joint-path IG with the same baseline gets 7/10 (27/63)."""
    assert _hit_rate(smollm2, facts[:5], "sequential_ig") >= 0.8  # 5/5 measured; the full 10 cost ~2 min on one thread
    fact = facts[0]
    target = Contrast(fact["answer"], fact["wrong"])
    sig = attribute(smollm2, fact["prompt"], target, method="sequential_ig", warn=False)
    occ = attribute(smollm2, fact["prompt"], target, method="occlusion", warn=False)
    moving = sig.metadata["moving_positions"]
    torch.testing.assert_close(sig.scores[0, moving], occ.scores[0, moving].float(), atol=0.5, rtol=0.1)


def test_ig_with_the_default_baseline_is_complete(smollm2, facts):
    """Mean-embedding baseline, first token kept: the gap shrinks with steps and is under 1% at 64 Gauss–Legendre steps."""
    for fact in facts[:2]:
        check = ig_convergence(smollm2, fact["prompt"], Contrast(fact["answer"], fact["wrong"]), steps=(16, 64))
        assert check.converged, check.verdict


def test_captums_zero_baseline_is_degenerate_and_warns(smollm2, facts):
    """Zero baseline with every token moving (captum's IG): on "The capital of France is" the gap is ~140% of
    F(x) - F(x') at 16 and at 64 steps; ig_convergence calls it degenerate and IG warns with the measured gap."""
    fact = facts[0]
    target = Contrast(fact["answer"], fact["wrong"])
    check = ig_convergence(smollm2, fact["prompt"], target, steps=(16, 64), baseline="zero", keep_first_token=False)
    assert not check.converged and check.relative_deltas[-1] > 0.2, check.verdict
    with pytest.warns(CompletenessWarning, match="attention sink"):
        attribute(smollm2, fact["prompt"], target, method="ig", baseline="zero", keep_first_token=False, n_steps=16,
                  warn=False)


def test_ig_in_bf16_matches_fp32(smollm2, smollm2_bf16, facts):
    """bf16 model: the passes run in bf16; path, quadrature sum and logits are float32. The scores then match the
    fp32 model's (France: largest difference 0.06 on a top score of 2.4). Completeness against the bf16 model's own
    F(x) - F(x') is limited by its forward rounding through 30 layers: F(x) is 6.77 in bf16 against 6.66 in fp32,
    and the relative delta is 5.0% here (fp32 0.9%)."""
    fact = facts[0]
    target = Contrast(fact["answer"], fact["wrong"])
    half = attribute(smollm2_bf16, fact["prompt"], target, method="ig", n_steps=32, warn=False)
    full = attribute(smollm2, fact["prompt"], target, method="ig", n_steps=32, warn=False)
    assert half.metadata["accumulation_dtype"] == "float32" and half.scores.dtype == torch.float32
    torch.testing.assert_close(half.scores, full.scores, atol=0.05 * float(full.scores.abs().max()), rtol=0)
    assert half.metadata["relative_delta"][0] < 0.08
