"""Shared fixtures for the circuits tests: zoo models and tasks, loaded once per session."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.circuits import prepare_edge_patching, setup_for


@pytest.fixture(scope="session")
def frac():
    model = mechinterp.load("zoo:tracr-frac-prevs")
    task = mechinterp.tasks.load("tracr-frac-prevs", model, n=12, seed=1)
    return model, task, setup_for(model, task, "zero")


@pytest.fixture(scope="session")
def reverse():
    # ACDC's setting: length-3 inputs; at the maximum length 5 the length sub-circuit is
    # invisible to zero ablation (zeroing L0H0's value input reads as "length 5").
    model = mechinterp.load("zoo:tracr-reverse")
    task = mechinterp.tasks.load("tracr-reverse", model, n=12, seed=1, seq_len=3)
    return model, task, setup_for(model, task, "zero")


@pytest.fixture(scope="session")
def prev_tokens():
    model = mechinterp.load("zoo:tracr-prev-tokens")
    task = mechinterp.tasks.load("tracr-prev-tokens", model, n=12, seed=1)
    return model, task, setup_for(model, task, "zero")


@pytest.fixture(scope="session")
def tiny_setup(tiny_model):
    """The random LayerNorm+MLP model with clean/corrupted token batches and a logit-diff metric."""
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(3, 48, (3, 6), generator=gen)
    corrupted = torch.randint(3, 48, (3, 6), generator=gen)
    setup = prepare_edge_patching(tiny_model, clean, corrupted, ablation="corrupted")

    def metric(logits):
        return logits[:, -1, 5] - logits[:, -1, 7]

    return tiny_model, setup, metric


def build_tiny_gqa(seed: int = 0):
    """A 2-layer random Llama-style model: rotary, RMSNorm, gated SiLU MLP, 2 key/value heads for 4 heads."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=50, act_fn="silu",
        normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8, gated_mlp=True,
        n_key_value_heads=2, seed=seed, device="cpu",
    )
    torch.manual_seed(seed)
    model = HookedTransformer(cfg)
    model.eval()
    return model


@pytest.fixture(scope="session")
def tiny_gqa():
    """The tiny GQA model with clean/corrupted token batches (corrupted ablation) and a logit-diff metric."""
    model = build_tiny_gqa()
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(3, 48, (3, 6), generator=gen)
    corrupted = torch.randint(3, 48, (3, 6), generator=gen)
    setup = prepare_edge_patching(model, clean, corrupted, ablation="corrupted")

    def metric(logits):
        return logits[:, -1, 5] - logits[:, -1, 7]

    return model, setup, metric
