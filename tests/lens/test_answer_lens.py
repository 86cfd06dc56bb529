"""The answer lens: equal to the logit lens at the answer (live norm), to TransformerLens's accumulated_resid
route and to DLA's per-layer sums (frozen norm)."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import MechinterpError
from mechinterp.lens import AnswerLensResult, answer_lens, decode, direct_logit_attribution

FACTS = ["The capital of France is", "Everyone knows that the capital of Peru is", "The capital of Japan is"]
ANSWERS, WRONG = ["Paris", "Lima", "Tokyo"], ["Rome"] * 3


def _ids(model, words):
    return model.to_tokens(" " + " ".join(words), prepend_bos=False)[0]


@pytest.mark.parametrize("site", ["resid_pre", "resid_post"])
def test_live_norm_is_the_logit_lens_at_the_answer(toy_lm, site):
    cache = mechinterp.SharedCache(toy_lm, FACTS, positions="last")
    res = answer_lens(toy_lm, cache, ANSWERS, wrong=WRONG, site=site)
    a, w = _ids(toy_lm, ANSWERS), _ids(toy_lm, WRONG)
    hooks = [f"blocks.{l}.hook_{site}" for l in range(toy_lm.cfg.n_layers)]
    if site == "resid_pre":
        hooks.append(f"blocks.{toy_lm.cfg.n_layers - 1}.hook_resid_post")
    with torch.inference_mode():
        logits = torch.stack([decode(toy_lm, cache.get(h)) for h in hooks])  # [row, prompt, d_vocab]
    expect = logits[:, torch.arange(3), a] - logits[:, torch.arange(3), w]
    torch.testing.assert_close(res.values, expect, atol=1e-4, rtol=1e-5)
    own = toy_lm(mechinterp.tokenize(toy_lm, FACTS).tokens)
    last = mechinterp.tokenize(toy_lm, FACTS).last_pos
    own = own[torch.arange(3), last]
    torch.testing.assert_close(res.values[-1], (own[torch.arange(3), a] - own[torch.arange(3), w]).detach(), atol=1e-4, rtol=1e-5)
    assert len(res.rows) == toy_lm.cfg.n_layers + (site == "resid_pre")
    assert_no_hooks(toy_lm)


@pytest.mark.parametrize("norm", ["live", "frozen"])
def test_both_norms_match_transformer_lens(toy_lm, norm):
    """TL 3.9: ``accumulated_resid(apply_ln=True)`` recomputes the final norm per row (live);
    ``apply_ln_to_stack(recompute_ln=False)`` uses the cached final scale for every row (frozen)."""
    cache = mechinterp.SharedCache(toy_lm, FACTS, positions="last")
    cache.fetch(["ln_final.hook_scale"])
    res = answer_lens(toy_lm, cache, ANSWERS, wrong=WRONG, site="resid_pre", norm=norm)
    tl = cache.to_tl_cache()
    a, w = _ids(toy_lm, ANSWERS), _ids(toy_lm, WRONG)
    with torch.inference_mode():
        if norm == "live":
            stack = tl.accumulated_resid(layer=-1, incl_mid=False, apply_ln=True)  # [row, prompt, d_model]
        else:
            raw = tl.accumulated_resid(layer=-1, incl_mid=False, apply_ln=False)
            stack = tl.apply_ln_to_stack(raw, layer=-1, recompute_ln=False)
        direction = toy_lm.W_U[:, a] - toy_lm.W_U[:, w]  # [d_model, prompt]
        theirs = (stack * direction.T).sum(-1) + (toy_lm.b_U[a] - toy_lm.b_U[w])
    torch.testing.assert_close(res.values, theirs.float(), atol=1e-4, rtol=1e-5)


def test_frozen_rows_step_by_each_layers_direct_logit_attribution(tiny_model):
    """tiny_model keeps LayerNorm weights and biases unfolded. With the final scale frozen, row l+1 minus row l is
    the DLA of layer l's heads, attention bias and MLP; row 0 is the embeddings' DLA plus the constant."""
    prompts = ["w1 w2 w3 w4", "w5 w6", "w7 w8 w9"]
    for positions in ("last", "all"):
        res = answer_lens(tiny_model, prompts, "w3", wrong="w4", site="resid_pre", norm="frozen", positions=positions)
        dla = direct_logit_attribution(tiny_model, prompts, "w3", wrong="w4", positions=positions)
        embed = sum(dla[c] for c in ("embed", "pos_embed") if c in dla.components) + dla.constant
        torch.testing.assert_close(res.values[0], embed, atol=1e-4, rtol=1e-4)
        for l in range(tiny_model.cfg.n_layers):
            layer = sum(dla[c] for c in dla.components if c.startswith(f"L{l}H") or c in (f"L{l} attn bias", f"MLP{l}"))
            torch.testing.assert_close(res.values[l + 1] - res.values[l], layer, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(res.values[-1], dla.target, atol=1e-4, rtol=1e-4)
        if positions == "all":
            assert res.values.shape[1:] == res.mask.shape and not bool(res.values[:, 1, 3:].any())


def test_single_answer_result_round_trip_and_render(toy_lm, tmp_path):
    res = answer_lens(toy_lm, FACTS, "Paris")
    assert isinstance(res, AnswerLensResult) and res.target_label == "logit('Paris')"
    assert res.mean().shape == (toy_lm.cfg.n_layers,)
    res.save(tmp_path / "a.json")
    again = AnswerLensResult.load(tmp_path / "a.json")
    torch.testing.assert_close(again.values, res.values)
    assert "answer lens (live norm)" in res.to_html() and res.plot() is not None


def test_first_row_above():
    res = AnswerLensResult(method="m", rows=["r0", "r1", "r2", "r3"], values=torch.tensor([[-1.0], [2.0], [-0.5], [3.0]]),
                           target_label="t", mask=torch.ones(1, dtype=torch.bool))
    assert res.first_row_above(0.0) == "r3" and res.first_row_above(-2.0) == "r0" and res.first_row_above(5.0) is None


def test_bad_input(toy_lm):
    with pytest.raises(MechinterpError, match="norm must be"):
        answer_lens(toy_lm, FACTS, "Paris", norm="both")
    with pytest.raises(MechinterpError, match="site"):
        answer_lens(toy_lm, FACTS, "Paris", site="attn_out")
    with pytest.raises(MechinterpError, match="one answer per prompt"):
        answer_lens(toy_lm, FACTS, ["Paris", "Lima"])
    cache = mechinterp.SharedCache(toy_lm, FACTS, positions=[1, 2, 1])
    with pytest.raises(MechinterpError, match="positions"):
        answer_lens(toy_lm, cache, "Paris")
    assert_no_hooks(toy_lm)


def test_chunking_does_not_change_the_values(toy_lm, monkeypatch):
    import importlib

    module = importlib.import_module("mechinterp.lens.answer_lens")

    cache = mechinterp.SharedCache(toy_lm, FACTS, positions="all")
    whole = {norm: answer_lens(toy_lm, cache, ANSWERS, wrong=WRONG, norm=norm) for norm in ("live", "frozen")}
    monkeypatch.setattr(module, "CHUNK_TOKENS", 1)  # one prompt per chunk
    for norm, reference in whole.items():
        chunked = answer_lens(toy_lm, cache, ANSWERS, wrong=WRONG, norm=norm)
        torch.testing.assert_close(chunked.values, reference.values, atol=1e-6, rtol=0)
