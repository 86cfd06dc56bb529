"""A tiny TopK SAE on SmolLM2-135M's residual stream: trained from the shared cache, spliced in.

A few hundred tokens of ordinary text at ``blocks.10.hook_resid_post`` (d_model 576), 1152
latents, k=16, 3 epochs: a smoke test of the real-model path (cache -> stream -> train ->
splice -> evaluate), not a useful SAE. With the error term kept the logits must equal the
clean run's (1e-5); the reconstruction must explain some variance and recover most of the
next-token loss (measured on 3 of the training texts: explained variance 0.65, CE loss
recovered 0.89, L0 16; an untrained SAE of the same shape: -0.99 and -0.08).
"""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.dictionary import evaluate_sae, splice, train_sae

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
