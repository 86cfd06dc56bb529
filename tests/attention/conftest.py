"""Hand-built models whose attention is known in closed form, for the attention tests."""

from __future__ import annotations

import pytest
import torch


def attn_only(n_layers: int, n_heads: int = 2, d_model: int = 16, n_ctx: int = 8, d_vocab: int = 10, norm=None):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=n_layers, n_heads=n_heads, d_model=d_model, d_head=d_model // n_heads, n_ctx=n_ctx,
        d_vocab=d_vocab, attn_only=True, normalization_type=norm, act_fn=None, seed=1, device="cpu",
    )
    torch.manual_seed(1)
    model = HookedTransformer(cfg)
    model.eval()
    return model


@pytest.fixture(scope="session")
def uniform_model():
    """Two layers, W_Q = 0: every head attends uniformly to the causal prefix, A[q, k] = 1/(q+1)."""
    model = attn_only(2)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.zero_()
            block.attn.b_Q.zero_()
    return model


@pytest.fixture(scope="session")
def positional_model():
    """One layer, four heads from one-hot positions: H0 previous-token, H1 first-token, H2/H3 uniform.

    d_model = 2 * n_ctx: dims [0, n_ctx) hold a one-hot position, token embeddings are zero.
    """
    n_ctx, d_head = 8, 8
    model = attn_only(1, n_heads=4, d_model=4 * d_head, n_ctx=n_ctx, d_vocab=12)
    c = 60.0 * d_head**0.5
    with torch.no_grad():
        model.embed.W_E.zero_()
        model.pos_embed.W_pos.zero_()
        model.pos_embed.W_pos[:, :n_ctx] = torch.eye(n_ctx)
        attn = model.blocks[0].attn
        for p in (attn.W_Q, attn.W_K, attn.b_Q, attn.b_K):
            p.zero_()
        # head 0: q_i = e_i, k_j = c e_{j+1}  ->  score c iff j = i - 1
        attn.W_Q[0, :n_ctx, :n_ctx] = torch.eye(n_ctx)
        attn.W_K[0, : n_ctx - 1, 1:n_ctx] = c * torch.eye(n_ctx - 1)
        # head 1: q_i = e_0 for all i, k_0 = c e_0  ->  attends to position 0
        attn.W_Q[1, :n_ctx, 0] = 1.0
        attn.W_K[1, 0, 0] = c
    return model


@pytest.fixture(scope="session")
def one_layer():
    """One attention-only layer, two heads, no LayerNorm: logits are linear in the patterns."""
    return attn_only(1, n_heads=2, d_model=16, norm=None)
