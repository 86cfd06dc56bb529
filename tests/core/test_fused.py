"""Fused GELU and LayerNorm swapped into TL's modules: same functions, restored after, also on error."""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.fused import fused_activations, fused_gelu_tanh, fused_kernels, fused_layer_norms


def _model(tiny_model, act_fn, **extra):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=tiny_model.cfg.d_vocab,
                                  act_fn=act_fn, normalization_type="LN", seed=3, device="cpu", **extra)
    return HookedTransformer(cfg, tokenizer=tiny_model.tokenizer).eval()


@pytest.mark.parametrize("name", ["gelu_new", "gelu_fast"])
def test_fused_gelu_equals_tl_values_and_gradients(name):
    from transformer_lens.utilities import activation_functions as af

    x = (torch.randn(4096, generator=torch.Generator().manual_seed(0)) * 4).requires_grad_(True)
    ref = getattr(af, name)(x)
    got = fused_gelu_tanh(x)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)
    (g_ref,) = torch.autograd.grad(ref.sum(), x)
    (g_got,) = torch.autograd.grad(got.sum(), x)
    torch.testing.assert_close(g_got, g_ref, atol=2e-6, rtol=1e-5)  # 1e-6 at |x| ~ 3-4 (the tail), rounding


@pytest.mark.parametrize("act_fn,n", [("gelu_new", 2), ("gelu_fast", 2), ("gelu", 0), ("silu", 0)])
def test_swap_only_tanh_gelus_and_restore(tiny_model, act_fn, n):
    model = _model(tiny_model, act_fn)
    before = [b.mlp.act_fn for b in model.blocks]
    with fused_activations(model) as swapped:
        assert swapped == n
        assert all((b.mlp.act_fn is fused_gelu_tanh) == (n > 0) for b in model.blocks)
    assert [b.mlp.act_fn for b in model.blocks] == before
    with pytest.raises(RuntimeError, match="boom"), fused_activations(model):
        raise RuntimeError("boom")
    assert [b.mlp.act_fn for b in model.blocks] == before


def test_gated_mlp_is_swapped_too(tiny_model):
    model = _model(tiny_model, "gelu_new", gated_mlp=True)
    with fused_activations(model) as swapped:
        assert swapped == 2


@pytest.mark.parametrize("act_fn", ["gelu_new", "gelu_fast"])
def test_activations_and_input_gradients_match_tl(tiny_model, act_fn):
    """Every hooked activation and the gradient w.r.t. the embeddings agree with TL's chain to float rounding."""
    model = _model(tiny_model, act_fn)
    tokens = torch.randint(3, model.cfg.d_vocab, (3, 10), generator=torch.Generator().manual_seed(1))
    embed = model.embed(tokens).detach()

    def run():
        x = embed.clone().requires_grad_(True)
        logits, cache = model.run_with_cache(x, start_at_layer=0)  # pos_embed not added: fine for a comparison
        return logits, cache, torch.autograd.grad(logits[:, -1].logsumexp(-1).sum(), x)[0]

    ref_logits, ref_cache, ref_grad = run()
    with fused_activations(model):
        logits, cache, grad = run()
    assert set(cache.keys()) == set(ref_cache.keys())
    for name in ref_cache:
        torch.testing.assert_close(cache[name], ref_cache[name], atol=1e-5, rtol=1e-5, msg=name)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("normalization_type", ["LN", "LNPre"])
def test_fused_layer_norms_match_tl_and_restore(tiny_model, normalization_type):
    """Outputs and input gradients of the whole model equal TL's; the LN hook points are skipped inside only."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=tiny_model.cfg.d_vocab,
                                  act_fn="gelu_new", normalization_type=normalization_type, seed=4, device="cpu")
    model = HookedTransformer(cfg, tokenizer=tiny_model.tokenizer).eval()
    tokens = torch.randint(3, model.cfg.d_vocab, (3, 10), generator=torch.Generator().manual_seed(2))
    embed = model.embed(tokens).detach() * 3

    def run():
        x = embed.clone().requires_grad_(True)
        logits = model(x, start_at_layer=0)
        return logits, torch.autograd.grad(logits[:, -1].logsumexp(-1).sum(), x)[0]

    ref_logits, ref_grad = run()
    with fused_kernels(model):
        logits, grad = run()
        with fused_layer_norms(model) as n:  # nested: nothing left to swap
            assert n == 0
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-4)
    lns = [m for m in model.modules() if type(m).__name__ in ("LayerNorm", "LayerNormPre")]
    assert len(lns) == 5 and not any("forward" in m.__dict__ for m in lns)
    with pytest.raises(RuntimeError, match="boom"), fused_layer_norms(model) as n:
        assert n == 5 and all("forward" in m.__dict__ for m in lns)
        raise RuntimeError("boom")
    assert not any("forward" in m.__dict__ for m in lns)
    _, cache = model.run_with_cache(tokens)  # TL's own forward again: the hook points fire
    assert "blocks.0.ln1.hook_scale" in cache


def test_layer_norms_of_half_precision_models_are_left_alone(tiny_model):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=1, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=tiny_model.cfg.d_vocab,
                                  act_fn="gelu_new", normalization_type="LN", seed=4, device="cpu", dtype=torch.bfloat16)
    model = HookedTransformer(cfg, tokenizer=tiny_model.tokenizer).eval()
    with fused_layer_norms(model) as n:
        assert n == 0
