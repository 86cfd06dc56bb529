"""Logit lens: the last row is the model's own output; every row is decode(resid) in closed form."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import MechinterpError
from mechinterp.lens import LensResult, TunedLens, logit_lens

PROMPTS = ["The capital of France is", "Everyone knows that the capital of Peru is", "Review : the food was great . Sentiment :"]


def test_last_row_is_the_model_output(toy_lm):
    res = logit_lens(toy_lm, PROMPTS, k=3)
    tokens = mechinterp.tokenize(toy_lm, PROMPTS)
    logits = toy_lm(tokens.tokens)
    final = logits[torch.arange(len(PROMPTS)), tokens.last_pos].softmax(-1)
    top_p, top_i = final.topk(3)
    assert torch.equal(res.top_ids[-1], top_i)
    torch.testing.assert_close(res.top_probs[-1], top_p, atol=1e-5, rtol=1e-4)
    assert torch.all(res.kl[-1].abs() < 1e-5)
    assert torch.all(res.answer_ranks[-1] == 0)  # no answer given: the model's own top-1
    assert_no_hooks(toy_lm)


def test_every_row_and_position_matches_closed_form(toy_lm):
    res = logit_lens(toy_lm, PROMPTS, answers=["Paris", "Lima", "positive"], site="resid_pre", positions="all", k=2)
    assert res.rows[-1] == "final" and len(res.rows) == toy_lm.cfg.n_layers + 1
    tokens = mechinterp.tokenize(toy_lm, PROMPTS)
    _, cache = toy_lm.run_with_cache(tokens.tokens)
    answers = toy_lm.to_tokens(" Paris Lima positive", prepend_bos=False)[0]
    final = toy_lm(tokens.tokens).log_softmax(-1)
    for r in (0, 2):
        lp = toy_lm.unembed(toy_lm.ln_final(cache[f"blocks.{r}.hook_resid_pre"])).log_softmax(-1)
        for i in range(len(PROMPTS)):
            n = int(tokens.lengths[i])
            expect_p = lp[i, :n, answers[i]].exp()
            torch.testing.assert_close(res.answer_probs[r, i, :n], expect_p, atol=1e-5, rtol=1e-4)
            kl = (final[i, :n].exp() * (final[i, :n] - lp[i, :n])).sum(-1)
            torch.testing.assert_close(res.kl[r, i, :n], kl, atol=1e-4, rtol=1e-4)
            rank = (lp[i, :n] > lp[i, :n, answers[i], None]).sum(-1)
            assert torch.equal(res.answer_ranks[r, i, :n], rank)
            assert torch.all(res.kl[r, i, n:] == 0)  # padding
    # the lens sharpens with depth on prompts the model solves
    probs = res.answer_probs[:, torch.arange(3), tokens.last_pos]
    assert torch.all(probs[-1] > 0.5) and torch.all(probs[0] < probs[-1])


def test_chunking_does_not_change_results_and_reads_a_shared_cache(toy_lm):
    cache = mechinterp.SharedCache(toy_lm, PROMPTS, positions="last")
    a = logit_lens(toy_lm, cache, answers="Paris", chunk_tokens=1)
    b = logit_lens(toy_lm, PROMPTS, answers="Paris", chunk_tokens=4096)
    torch.testing.assert_close(a.kl, b.kl)
    assert torch.equal(a.top_ids, b.top_ids)
    passes = cache.n_forward_passes
    logit_lens(toy_lm, cache)
    assert cache.n_forward_passes == passes  # cached: no new pass


def test_zero_translators_are_the_logit_lens(toy_lm):
    lens = TunedLens()
    d, n = toy_lm.cfg.d_model, toy_lm.cfg.n_layers
    lens.weight_, lens.bias_ = torch.zeros(n, d, d), torch.zeros(n, d)
    lens.n_rows_, lens.d_model_, lens.n_layers_, lens.trained_rows_, lens.loss_history_ = n, d, n, list(range(n - 1)), []
    a, b = lens.apply(toy_lm, PROMPTS), logit_lens(toy_lm, PROMPTS)
    torch.testing.assert_close(a.kl, b.kl)
    assert a.method.startswith("tuned lens")


def test_result_round_trip_and_render(toy_lm, tmp_path):
    res = logit_lens(toy_lm, PROMPTS, answers="Paris", positions="all")
    back = LensResult.load(res.save(tmp_path / "lens.json"))
    torch.testing.assert_close(back.kl, res.kl)
    assert back.vocab == res.vocab and back.rows == res.rows
    assert "<table>" in res.to_html() and "http" not in res.to_html()
    res.plot()
    logit_lens(toy_lm, PROMPTS).plot()
    assert res.top_tokens(0, 3)[-1][0][0] == res.vocab[int(res.top_ids[-1, 0, 3, 0])]


def test_bad_input(toy_lm, tiny_model):
    with pytest.raises(MechinterpError, match="site must be"):
        logit_lens(toy_lm, PROMPTS, site="mlp_out")
    with pytest.raises(MechinterpError, match="k must be"):
        logit_lens(toy_lm, PROMPTS, k=0)
    with pytest.raises(MechinterpError, match="one answer per prompt"):
        logit_lens(toy_lm, PROMPTS, answers=["Paris", "Lima"])
    with pytest.raises(MechinterpError, match="another model"):
        logit_lens(toy_lm, mechinterp.SharedCache(tiny_model, ["w1 w2"]))
    with pytest.raises(MechinterpError, match="not fitted"):
        TunedLens().apply(toy_lm, PROMPTS)
    assert_no_hooks(toy_lm)
