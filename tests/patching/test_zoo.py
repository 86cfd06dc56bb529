"""Patching on the zoo models, whose mechanisms are documented in their model cards."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import patching as tlp

import mechinterp
from mechinterp.patching import activation_patch, causal_trace, compare_with_exact, path_patch


@pytest.fixture(scope="module")
def toy():
    return mechinterp.load("zoo:toy-lm")


@pytest.fixture(scope="module")
def attn2():
    return mechinterp.load("zoo:attn-only-2l")


@pytest.fixture(scope="module")
def ioi(toy):
    return mechinterp.tasks.load("ioi", toy, n=24, seed=0)


def test_toy_lm_resid_and_head_sweeps_equal_transformer_lens(toy):
    task = mechinterp.tasks.load("ioi", toy, n=2, seed=3)
    clean, corrupted = task.clean_tokens[:, :8], task.corrupted_tokens[:, :8]  # 8 positions keep TL's loop short
    rows = torch.arange(2)
    metric = lambda logits: logits[rows, -1, task.correct_tokens] - logits[rows, -1, task.wrong_tokens]  # noqa: E731
    _, cache = toy.run_with_cache(clean)
    tl_metric = lambda logits: metric(logits).mean()  # noqa: E731
    for site, by, fn in [("resid_pre", "position", tlp.get_act_patch_resid_pre), ("z", "head_position", tlp.get_act_patch_attn_head_out_by_pos)]:
        ours = activation_patch(toy, clean, corrupted, metric, site=site, by=by, normalise=False)
        torch.testing.assert_close(ours.raw, fn(toy, corrupted, cache, tl_metric), atol=1e-4, rtol=0)


def test_toy_lm_ioi_heads_agree_with_the_model_card(toy, ioi):
    """The card (circuit.json, noising z per head, 128 prompts) names L1H2 (+0.53) and L1H1 (+0.37) as the IOI heads."""
    card = mechinterp.zoo.read_json("toy-lm", "circuit.json")["effects"]["ioi"]
    result = activation_patch(toy, ioi, site="z", by="head", direction="noising")
    top2 = {labels["layer"] + labels["head"] for labels, _ in result.top(2)}
    card_heads = sorted((k for k in card if k.startswith("L")), key=lambda k: -abs(card[k]))[:2]
    assert top2 == set(card_heads) == {"L1H1", "L1H2"}
    for name in card_heads:
        layer, head = int(name[1]), int(name[3])
        assert float(result.values[layer, head]) == pytest.approx(card[name], abs=0.1)
    # Their effect is direct: path patching them to the final residual keeps most of it.
    direct = path_patch(toy, ioi, receivers="resid_final", direction="noising")
    for name in card_heads:
        layer, head = int(name[1]), int(name[3])
        assert float(direct.values[layer, head]) > 0.25
    assert {l["layer"] + l["head"] for l, _ in direct.top(2)} == {"L1H1", "L1H2"}


def test_toy_lm_facts_causal_trace_ends_at_clean(toy):
    facts = mechinterp.tasks.load("facts", toy, n=6, seed=0)
    keep = (facts.lengths == facts.lengths[0]).nonzero().flatten().tolist()  # one template length: no padding
    trace = causal_trace(
        toy, facts.clean_tokens[keep, : int(facts.lengths[0])], [facts.ground_truth.positions[i] for i in keep],
        "prob", answers=facts.correct_tokens[keep], n_samples=3,
    )
    assert trace.values.shape == (int(facts.lengths[0]), 4)
    assert float(trace.values[-1, -1]) == pytest.approx(1.0, abs=1e-4)  # last token, last layer: the clean run
    subject = min(min(facts.ground_truth.positions[i]) for i in keep)
    torch.testing.assert_close(trace.values[:subject], torch.zeros(subject, 4), atol=1e-5, rtol=0)  # before the noise
    # On the task itself (default metric: probability of the correct answer) the noise lowers the probability.
    full = causal_trace(toy, facts, n_samples=3)
    assert full.base_value < full.target_value


def test_attn_only_2l_induction_attribution_agrees_with_exact(attn2):
    """Measured (16 prompts): Pearson r 0.98 (resid_pre by position), 0.99 (z by head), 1.00 (attn_out by position)."""
    task = mechinterp.tasks.load("induction", attn2, n=16, seed=0)
    for site, by in [("resid_pre", "position"), ("z", "head"), ("attn_out", "position")]:
        cmp = compare_with_exact(attn2, task, site=site, by=by)
        assert cmp.pearson > 0.9, (site, cmp.pearson)
    ig = compare_with_exact(attn2, task, site="z", by="head", ig_steps=5)
    assert ig.pearson > 0.85
