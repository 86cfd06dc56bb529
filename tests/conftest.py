"""Shared fixtures: a tiny random model with a word tokenizer, and a network guard."""

from __future__ import annotations

import pytest
import torch

WORDS = [f"w{i}" for i in range(45)]


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny forward passes are dominated by thread start-up: one thread is faster and steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def no_network():
    """Make every socket connection fail, as on a machine without internet."""
    from mechinterp.testing import offline

    with offline():
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-layer, 4-head random HookedTransformer with LayerNorm and MLPs (fixed seed)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from mechinterp.zoo.tokenizer import word_tokenizer

    tokenizer = word_tokenizer(WORDS, tmp_path_factory.mktemp("tok"))
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=len(WORDS) + 3,
        act_fn="gelu", normalization_type="LN", seed=0, device="cpu",
    )
    torch.manual_seed(0)
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    model.eval()
    return model
