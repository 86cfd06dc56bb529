"""evaluate_sae against closed forms: an exactly invertible SAE, TL's own loss, manual sums."""

from __future__ import annotations

import math

import pytest
import torch

from mechinterp.core.hooks import assert_no_hooks
from mechinterp.dictionary import SAEEvaluation, SparseAutoencoder, evaluate_sae

HOOK = "blocks.0.hook_resid_post"


def _identity_sae(d):
    """relu(x) - relu(-x) = x: latents [x+, x-], a perfect reconstruction with L0 = d (a.s.)."""
    sae = SparseAutoencoder(d, 2 * d, "standard", hook_name=HOOK)
    with torch.no_grad():
        eye = torch.eye(d)
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


@pytest.fixture
def tokens():
    return torch.randint(3, 48, (4, 9), generator=torch.Generator().manual_seed(0))


def test_perfect_sae_recovers_everything(tiny_model, tokens):
    d = tiny_model.cfg.d_model
    result = evaluate_sae(tiny_model, _identity_sae(d), tokens)
    assert result.explained_variance == pytest.approx(1.0, abs=1e-9)
    assert result.ce_loss_recovered == pytest.approx(1.0, abs=1e-6)
    assert result.kl_spliced == pytest.approx(0.0, abs=1e-9)
    assert result.l0 == pytest.approx(d)  # each coordinate is in exactly one of x+, x-
    assert result.dead_fraction == 0 and result.n_tokens == 36
    assert_no_hooks(tiny_model)


@torch.no_grad()
def test_losses_match_transformer_lens(tiny_model, tokens):
    torch.manual_seed(0)
    sae = SparseAutoencoder(tiny_model.cfg.d_model, 64, "topk", k=4, hook_name=HOOK)
    result = evaluate_sae(tiny_model, sae, tokens, batch_size=3)  # two batches, no padding
    assert result.ce_clean == pytest.approx(float(tiny_model(tokens, return_type="loss")), abs=1e-5)

    def replace(act, hook):
        return sae(act)

    def zero(act, hook):
        return torch.zeros_like(act)

    with tiny_model.hooks(fwd_hooks=[(HOOK, replace)]):
        assert result.ce_spliced == pytest.approx(float(tiny_model(tokens, return_type="loss")), abs=1e-5)
    with tiny_model.hooks(fwd_hooks=[(HOOK, zero)]):
        assert result.ce_zero_ablation == pytest.approx(float(tiny_model(tokens, return_type="loss")), abs=1e-5)
    assert result.l0 == 4.0
    # explained variance by hand
    _, cache = tiny_model.run_with_cache(tokens, names_filter=HOOK)
    x = cache[HOOK].reshape(-1, tiny_model.cfg.d_model)
    ev = 1 - (sae(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert result.explained_variance == pytest.approx(float(ev), abs=1e-5)
    assert math.isclose(sum(result.histogram_counts), round(64 * (1 - result.dead_fraction)))


def test_padding_is_excluded(tiny_model):
    torch.manual_seed(0)
    sae = SparseAutoencoder(tiny_model.cfg.d_model, 32, "topk", k=3, hook_name=HOOK)
    prompts = ["w1 w2 w3 w4 w5 w6", "w7 w8"]
    both = evaluate_sae(tiny_model, sae, prompts)
    assert both.n_tokens == sum(len(tiny_model.to_tokens(p)[0]) for p in prompts)


def test_result_serialises_and_renders(tiny_model, tokens, tmp_path):
    result = evaluate_sae(tiny_model, _identity_sae(tiny_model.cfg.d_model), tokens)
    back = SAEEvaluation.load(result.save(tmp_path / "ev.json"))
    assert back == result
    html = result.to_html()
    assert "CE loss recovered" in html and "http" not in html.replace("http://www.w3.org", "")


def test_skip_first_leaves_position_0_out_of_the_statistics(tiny_model, tokens):
    """With skip_first the site statistics cover positions 1.. only (27 of 36 tokens) and an SAE that reconstructs
    everything but position 0 scores as perfect: position 0 passes through the splice and the zero ablation."""
    d = tiny_model.cfg.d_model
    sae = _identity_sae(d)
    skipped = evaluate_sae(tiny_model, sae, tokens, skip_first=True)
    assert skipped.n_tokens == 4 * 8 and skipped.explained_variance == pytest.approx(1.0, abs=1e-9)
    assert skipped.kl_spliced == pytest.approx(0.0, abs=1e-9)
    full = evaluate_sae(tiny_model, sae, tokens)
    assert full.n_tokens == 36 and full.ce_clean == pytest.approx(skipped.ce_clean)
    # the zero-ablation baseline keeps position 0: a different (smaller) loss than zeroing every position
    assert skipped.ce_zero_ablation != pytest.approx(full.ce_zero_ablation)
    assert_no_hooks(tiny_model)
