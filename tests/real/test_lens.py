"""The lens family on SmolLM2-135M-Instruct (30 layers, RMSNorm folded to RMSPre, no BOS)."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.lens import TunedLens, answer_lens, check_exact, compare_lenses, direct_logit_attribution, logit_lens

pytestmark = pytest.mark.real

EIFFEL = "The Eiffel Tower is in the city of"
TRAIN = [
    "The cat sat on the mat and looked out of the window.",
    "In the morning we went to the market to buy fresh bread.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "She opened the letter and read it twice before answering.",
    "The train to London leaves the station every hour.",
    "Many birds fly south for the winter to find food.",
    "He plays the piano every evening after dinner.",
    "The museum is closed on Mondays and public holidays.",
]
HELD_OUT = [
    "The library opens at nine in the morning on weekdays.",
    "He forgot his umbrella and got wet in the rain.",
    "The doctor told him to drink more water every day.",
]


def test_logit_lens_finds_paris_in_the_late_layers(smollm2):
    res = logit_lens(smollm2, [EIFFEL], answers=" Paris")
    ranks = res.answer_ranks[:, 0]
    assert int(ranks[-1]) == 0 and res.top_tokens(0)[-1][0][0] == " Paris"
    logits = smollm2(EIFFEL)[0, -1].softmax(-1).detach()
    assert float(res.answer_probs[-1, 0]) == pytest.approx(float(logits[smollm2.to_single_token(" Paris")]), rel=1e-4)
    assert float(res.kl[-1, 0]) < 1e-4
    assert torch.all(ranks[:10] > 1000)  # early layers: " Paris" is nowhere near the top
    first_top = int((ranks == 0).nonzero()[0])
    assert first_top >= 20 and torch.all(ranks[first_top:] == 0)  # it surfaces late and stays on top
    assert_no_hooks(smollm2)


def test_dla_sums_exactly_and_matches_transformer_lens(smollm2):
    prompts = [EIFFEL, "The capital of France is"]
    cache = mechinterp.SharedCache(smollm2, prompts, positions="last")
    res = direct_logit_attribution(smollm2, cache, " Paris", wrong=" London")
    assert check_exact(res, atol=1e-4) < 1e-4
    logits = torch.stack([smollm2(p)[0, -1] for p in prompts])
    paris, london = smollm2.to_single_token(" Paris"), smollm2.to_single_token(" London")
    torch.testing.assert_close(res.target, (logits[:, paris] - logits[:, london]).detach(), atol=1e-3, rtol=1e-4)
    tl = cache.to_tl_cache()
    with torch.inference_mode():
        stack, labels = tl.stack_head_results(layer=-1, return_labels=True)
        theirs = tl.logit_attrs(stack, tokens=torch.tensor([paris] * 2), incorrect_tokens=torch.tensor([london] * 2))
    ours = torch.stack([res[label] for label in labels])
    torch.testing.assert_close(ours, theirs.float(), atol=1e-4, rtol=1e-4)
    assert_no_hooks(smollm2)


def test_answer_lens_is_the_logit_lens_at_the_answer_and_steps_by_dla(smollm2):
    """Live norm: each row equals the full logit lens's logit difference (RMSPre); frozen norm: consecutive rows
    differ by exactly the DLA of the layer in between."""
    prompts = [EIFFEL, "The capital of France is"]
    cache = mechinterp.SharedCache(smollm2, prompts, positions="last")
    live = answer_lens(smollm2, cache, " Paris", wrong=" London")
    paris, london = smollm2.to_single_token(" Paris"), smollm2.to_single_token(" London")
    with torch.inference_mode():
        rows = torch.stack([mechinterp.lens.decode(smollm2, cache.get(f"blocks.{l}.hook_resid_post")) for l in range(30)])
    torch.testing.assert_close(live.values, rows[..., paris] - rows[..., london], atol=2e-3, rtol=1e-4)
    assert live.first_row_above(0.0) is not None and int(live.first_row_above(0.0).split()[-1]) >= 15
    frozen = answer_lens(smollm2, cache, " Paris", wrong=" London", norm="frozen")
    dla = direct_logit_attribution(smollm2, cache, " Paris", wrong=" London")
    for l in range(1, 30):
        layer = sum(dla[c] for c in dla.components if c.startswith(f"L{l}H") or c in (f"L{l} attn bias", f"MLP{l}"))
        torch.testing.assert_close(frozen.values[l] - frozen.values[l - 1], layer, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(frozen.values[-1], live.values[-1], atol=1e-3, rtol=1e-4)
    assert_no_hooks(smollm2)


def test_tuned_lens_beats_the_logit_lens_on_held_out_text(smollm2):
    """Two layers, a short fit (the every-layer comparison is in benchmarks/lens_tuned.py)."""
    before = [p.requires_grad for p in smollm2.parameters()]
    lens = TunedLens(layers=[4, 16], steps=16, batch_tokens=16, lr=1e-3).fit(smollm2, TRAIN, progress=False)
    assert [p.requires_grad for p in smollm2.parameters()] == before
    cmp = compare_lenses(smollm2, HELD_OUT, {"logit": None, "tuned": lens}, layers=[4, 16])
    assert torch.all(cmp.kl["tuned"] < 0.8 * cmp.kl["logit"]), cmp.kl
    assert_no_hooks(smollm2)


def test_answer_lens_in_bf16_ends_at_the_models_logit_difference(smollm2_bf16):
    prompts = [EIFFEL, "The capital of France is"]
    res = answer_lens(smollm2_bf16, prompts, " Paris", wrong=" London")
    paris, london = smollm2_bf16.to_single_token(" Paris"), smollm2_bf16.to_single_token(" London")
    with torch.no_grad():
        own = torch.stack([smollm2_bf16(p)[0, -1] for p in prompts]).float()
    torch.testing.assert_close(res.values[-1], own[:, paris] - own[:, london], atol=0.1, rtol=0.02)  # measured 0.04
    assert int(res.first_row_above(0.0).split()[-1]) >= 15
    assert_no_hooks(smollm2_bf16)
