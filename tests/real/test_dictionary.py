"""A tiny TopK SAE on SmolLM2-135M's residual stream: trained from the shared cache, spliced in.

A few hundred tokens of ordinary text at ``blocks.10.hook_resid_post`` (d_model 576), 1152
latents, k=16, 3 epochs: a smoke test of the real-model path (cache -> stream -> train ->
splice -> evaluate), not a useful SAE. With the error term kept the logits must equal the
clean run's (1e-5); the reconstruction must explain some variance and recover most of the
next-token loss (measured on 3 of the training texts: explained variance 0.65, CE loss
recovered 0.89, L0 16; an untrained SAE of the same shape: -0.99 and -0.08).

The feature-level methods then run on a second tiny SAE (layer 24, 576 latents, k=16, the same
texts) on a fact pair (France -> " Paris" vs Italy -> " Rome"): feature EAP equals the gradient of
the latent-mask objective, the top latents' EAP scores agree with their patched effects (measured:
0.063/0.066, 0.063/0.063, 0.052/0.055, -0.036/-0.031... in logit-difference units), the latent
DLA parts sum to the site's direct contribution, clamping equals splicing with the latent edited,
and the dashboard renders offline.
"""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.attention import external_references
from mechinterp.dictionary import (
    evaluate_sae,
    feature_attribution,
    feature_patch,
    latent_dashboard,
    latent_dla,
    latent_mask_gradient,
    splice,
    steer_latent,
    train_sae,
)

pytestmark = pytest.mark.real

TEXTS = [
    "The cat sat on the mat and looked out of the window at the birds in the garden.",
    "Paris is the capital of France, and Rome is the capital of Italy.",
    "She opened the book, read the first page, and smiled at the familiar story.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The train left the station at nine o'clock and arrived in the city before noon.",
    "He wrote a short program that sorts a list of numbers from smallest to largest.",
    "In the autumn the leaves turn red and yellow before they fall from the trees.",
    "The museum was closed on Monday, so we visited the park and the old market instead.",
] * 2


def test_tiny_topk_sae_on_smollm2(smollm2):
    cache = mechinterp.SharedCache(smollm2, TEXTS, batch_size=16, progress=False)
    sae = train_sae(cache, ("resid_post", 10), k=16, expansion_factor=2, batch_size=64, n_epochs=3, lr=3e-3)
    assert sae.hook_name == "blocks.10.hook_resid_post" and sae.d_in == 576
    tokens = cache.tokens[:4, : int(cache.lengths[:4].min())]
    with torch.no_grad():
        clean = smollm2(tokens)
        with splice(smollm2, sae) as state:
            spliced = smollm2(tokens)
    assert torch.allclose(spliced, clean, atol=1e-5, rtol=0)
    assert state.latents.shape[-1] == 1152
    assert_no_hooks(smollm2)
    result = evaluate_sae(smollm2, sae, TEXTS[:3])
    assert result.l0 <= 16.0
    # measured: explained variance 0.65, CE loss recovered 0.89 (an untrained SAE: -0.99 and -0.08)
    assert result.explained_variance > 0.3
    assert result.ce_loss_recovered > 0.5
    assert_no_hooks(smollm2)


def test_feature_methods_on_smollm2(smollm2):
    cache = mechinterp.SharedCache(smollm2, TEXTS, batch_size=16, progress=False)
    sae = train_sae(cache, ("resid_post", 24), k=16, expansion_factor=1, batch_size=64, n_epochs=2, lr=3e-3)
    clean, corrupted = ["The capital of France is"], ["The capital of Italy is"]
    answers = (" Paris", " Rome")
    eap = feature_attribution(smollm2, sae, clean, corrupted, "logit_diff", answers=answers)
    grad = latent_mask_gradient(smollm2, sae, clean, corrupted, "logit_diff", answers=answers)
    assert torch.allclose(eap.scores[0], grad.scores[0], atol=1e-4 * float(grad.scores[0].abs().max()))
    assert torch.allclose(eap.error_scores, grad.error_scores, atol=1e-4 * float(grad.error_scores.abs().max()))
    assert eap.target_value > 0 > eap.base_value  # the clean run prefers " Paris", the corrupted one " Rome"
    by_latent = eap.by_latent()
    top = [int(i) for i in by_latent.abs().argsort(descending=True)[:5]]
    patched = feature_patch(smollm2, sae, clean, corrupted, "logit_diff", answers=answers, latents=top, normalise=False)
    effect = patched.raw - patched.base_value
    assert (torch.sign(effect) == torch.sign(by_latent[top])).all(), (effect, by_latent[top])
    assert (effect - by_latent[top]).abs().max() < 0.5 * effect.abs().max()

    dla = latent_dla(smollm2, sae, clean, " Paris", wrong=" Rome", latents=top)
    assert torch.allclose(dla.total(), dla.site_total, atol=1e-4)
    tokens = smollm2.to_tokens(clean)
    latent = top[0]
    with torch.no_grad():
        with steer_latent(smollm2, sae, latent, 0.0, mode="clamp"):
            clamped = smollm2(tokens)

        def edit(f):
            f = f.clone()
            f[..., latent] = 0.0
            return f

        with splice(smollm2, sae, edit=edit):
            spliced = smollm2(tokens)
    assert torch.allclose(clamped, spliced, atol=1e-4)
    page = latent_dashboard(smollm2, sae, cache, top[:2], k=3).to_page()
    assert external_references(page) == [] and page.count("class='latent-card'") == 2
    assert_no_hooks(smollm2)
