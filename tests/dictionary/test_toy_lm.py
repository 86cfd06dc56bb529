"""A short SAE training on the zoo's toy-lm, evaluated on held-out prompts.

TopK (k=8, 512 latents = 4x d_model) on ``blocks.1.hook_resid_post`` over the train
prompts of four language tasks (192 prompts, ~2.6k tokens, 10 epochs, ~8 s on one core).
Measured on 64 held-out prompts (843 tokens): L0 8, explained variance 0.875, CE loss
recovered 0.9992, KL 0.028 nats; an untrained SAE of the same shape: 0.17, 0.66, 1.69.
"""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.core.tokens import Tokenized
from mechinterp.dictionary import SparseAutoencoder, evaluate_sae, splice, train_sae

TASKS = ["ioi", "facts", "sentiment", "greater-than"]


def _prompts(model, n, split):
    tasks = [mechinterp.tasks.load(t, model, n=n, split=split) for t in TASKS]
    width = max(t.clean_tokens.shape[1] for t in tasks)
    tokens = torch.cat([torch.nn.functional.pad(t.clean_tokens, (0, width - t.clean_tokens.shape[1])) for t in tasks])
    lengths = torch.cat([t.lengths for t in tasks])
    return Tokenized(tokens, (torch.arange(width)[None] < lengths[:, None]).long(), lengths, "right")


@pytest.fixture(scope="module")
def trained():
    model = mechinterp.load("zoo:toy-lm")
    cache = mechinterp.SharedCache(model, _prompts(model, 48, "train"), progress=False)
    sae = train_sae(cache, ("resid_post", 1), k=8, expansion_factor=4, batch_size=256, n_epochs=10, lr=3e-3)
    return model, sae, _prompts(model, 16, "test")


def test_trained_sae_is_sane_on_held_out_prompts(trained):
    model, sae, test = trained
    result = evaluate_sae(model, sae, test)
    assert result.l0 <= 8.0 and result.l0 > 6.0
    assert result.explained_variance > 0.8
    assert result.ce_loss_recovered > 0.9
    assert result.kl_spliced < 0.1
    assert result.dead_fraction < 0.5
    log = sae.training_log
    assert log.explained_variance[-1] > 0.8 and log.hook_name == "blocks.1.hook_resid_post"
    # an untrained SAE of the same shape is far worse: the bars above measure training
    torch.manual_seed(0)
    random = SparseAutoencoder(sae.d_in, sae.d_sae, "topk", k=8, hook_name=sae.hook_name)
    baseline = evaluate_sae(model, random, test)
    assert baseline.explained_variance < 0.5 and baseline.ce_loss_recovered < result.ce_loss_recovered - 0.2
    assert_no_hooks(model)


def test_spliced_with_error_is_exact(trained):
    model, sae, test = trained
    tokens = test.tokens[:8]
    clean = model(tokens)
    with splice(model, sae):
        assert torch.allclose(model(tokens), clean, atol=1e-5, rtol=0)
