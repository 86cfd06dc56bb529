"""Fixtures of the feature-level tests: aligned clean/corrupted ids, a logit-difference metric, SAEs."""

from __future__ import annotations

import pytest
import torch

from mechinterp.dictionary import SparseAutoencoder


def make_sae(model, hook, d_sae=64, k=6, seed=0, **kw):
    """A random TopK SAE (encoder = decoder transposed, unit decoder rows) at ``hook``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        width = kw.pop("d_in", model.cfg.d_model)
        return SparseAutoencoder(width, d_sae, "topk", k=k, hook_name=hook, **kw)


def make_transcoder(model, layer=1, seed=2):
    """A random TopK transcoder from block ``layer``'s MLP input (``ln2.hook_normalized``) to its output."""
    return make_sae(model, f"blocks.{layer}.ln2.hook_normalized", seed=seed, d_out=model.cfg.d_model,
                    hook_name_out=f"blocks.{layer}.hook_mlp_out")


def identity_sae(model, hook):
    """A ReLU SAE that reconstructs exactly: latents relu(x) and relu(-x), decoder [I; -I] (error term 0)."""
    d = model.cfg.d_model
    sae = SparseAutoencoder(d, 2 * d, "standard", hook_name=hook)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


@pytest.fixture
def pair():
    """(clean, corrupted) ids [3, 8] differing at position 2, and metric logit(w5) - logit(w6) at the last token."""
    gen = torch.Generator().manual_seed(1)
    clean = torch.randint(3, 48, (3, 8), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 2] = torch.randint(3, 48, (3,), generator=gen)

    def metric(logits):
        return logits[:, -1, 5] - logits[:, -1, 6]

    return clean, corrupted, metric
