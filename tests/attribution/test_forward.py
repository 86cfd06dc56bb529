"""Shared forward passes: the hook-free fast path equals the hooked one; parameters and hooks are restored."""

from __future__ import annotations

import pytest
import torch

from mechinterp.attribution import Continuation, MetricTarget, attribute
from mechinterp.attribution.base import prepare_prompt
from mechinterp.attribution.forward import forward_scores, frozen_parameters, needed_length, target_gradients, token_embeddings
from mechinterp.core.hooks import assert_no_hooks

PROMPT = "w3 w1 w4 w1 w5"


VARIANTS = {
    "rotary": dict(act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8),
    "gqa": dict(act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8, n_key_value_heads=2,
                gated_mlp=True),
    "attn_only": dict(act_fn="gelu", normalization_type="LN", attn_only=True),
    "parallel": dict(act_fn="gelu", normalization_type="LN", parallel_attn_mlp=True),
}


def _variant(tiny_model, which):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=tiny_model.cfg.d_vocab,
                                  seed=2, device="cpu", **VARIANTS[which])
    return HookedTransformer(cfg, tokenizer=tiny_model.tokenizer).eval()


@pytest.mark.parametrize("which", ["standard", *VARIANTS])
@pytest.mark.parametrize("target", [("w9", "w2"), Continuation("w7 w8")])
def test_fast_path_equals_the_hooked_forward(tiny_model, which, target):
    """No hooks: start from the embeddings and run the last block at the last position only (keys and values
    of earlier positions through TL's cache entry). With a no-op hook: TL's full forward. Same values and gradients."""
    model = tiny_model if which == "standard" else _variant(tiny_model, which)
    prep = prepare_prompt(model, PROMPT, target)
    embed = token_embeddings(model, prep.batch_tokens).detach() * torch.linspace(0.2, 1.0, 3).view(-1, 1, 1)
    tokens = prep.batch_tokens.expand(3, -1)
    grads = []
    for hooks in ((), [("blocks.0.hook_resid_pre", lambda v, hook: v)]):
        x = embed.clone().requires_grad_(True)
        scores = forward_scores(model, tokens, prep.target, embed=x, fwd_hooks=hooks)
        grads.append((scores, torch.autograd.grad(scores.sum(), x)[0]))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # token-only forward (perturbation methods) takes the same path
        hooked = forward_scores(model, tokens, prep.target, fwd_hooks=[("blocks.0.hook_resid_pre", lambda v, hook: v)])
        torch.testing.assert_close(forward_scores(model, tokens, prep.target), hooked, atol=1e-5, rtol=1e-5)
    assert_no_hooks(model)


def test_continuation_stops_after_the_last_read_position(tiny_model):
    prep = prepare_prompt(tiny_model, PROMPT, Continuation("w7 w8"))
    assert needed_length(tiny_model, prep.target, len(prep.tokens)) == len(prep.tokens) - 1
    full = tiny_model(prep.batch_tokens)[0].log_softmax(-1)
    scores = forward_scores(tiny_model, prep.batch_tokens, prep.target)[0]
    ids = prep.tokens[-2:]
    torch.testing.assert_close(scores, torch.stack([full[-3, ids[0]], full[-2, ids[1]]]), atol=1e-5, rtol=0)


def test_parameter_flags_and_hooks_are_restored_even_on_error(tiny_model):
    flags = {n: p.requires_grad for n, p in tiny_model.named_parameters()}
    with pytest.raises(RuntimeError, match="boom"), frozen_parameters(tiny_model):
        assert not any(p.requires_grad for p in tiny_model.parameters())
        raise RuntimeError("boom")
    assert {n: p.requires_grad for n, p in tiny_model.named_parameters()} == flags

    def metric(logits):  # fine on the probe at bind time (no grad), fails inside the gradient run
        if logits.requires_grad:
            raise RuntimeError("boom")
        return logits[:, -1, 5]

    for method in ("ig", "attn_lrp"):
        for p in tiny_model.parameters():
            p.requires_grad_(True)
        with pytest.raises(RuntimeError, match="boom"):
            attribute(tiny_model, PROMPT, MetricTarget(metric), method=method, warn=False)
        assert all(p.requires_grad for p in tiny_model.parameters())
        assert_no_hooks(tiny_model)
    for name, p in tiny_model.named_parameters():
        p.requires_grad_(flags[name])


def test_hooks_the_user_attached_see_the_usual_forward(tiny_model):
    """A hook already on the model (``add_hook``) keeps its effect: no fast path around it."""
    prep = prepare_prompt(tiny_model, PROMPT, ("w9", "w2"))
    last = f"blocks.{tiny_model.cfg.n_layers - 1}"
    with torch.no_grad():
        embed = token_embeddings(tiny_model, prep.batch_tokens)
        plain = forward_scores(tiny_model, prep.batch_tokens, prep.target, embed=embed)
        for name in (f"{last}.hook_mlp_out", "hook_pos_embed"):
            hook = lambda v, hook: 0 * v  # noqa: E731
            ref = forward_scores(tiny_model, prep.batch_tokens, prep.target, embed=embed, fwd_hooks=[(name, hook)])
            tiny_model.add_hook(name, hook)
            try:
                got = forward_scores(tiny_model, prep.batch_tokens, prep.target, embed=embed)
            finally:
                tiny_model.reset_hooks()
            assert not torch.allclose(ref, plain)  # the hook matters
            torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)
    assert_no_hooks(tiny_model)


def _gelu_new_model(tiny_model):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=tiny_model.cfg.d_vocab,
                                  act_fn="gelu_new", normalization_type="LN", seed=5, device="cpu")
    return HookedTransformer(cfg, tokenizer=tiny_model.tokenizer).eval()


@pytest.mark.parametrize("method", ["ig", "saliency", "gradient_x_input"])
def test_fused_kernels_only_inside_hook_free_gradient_runs(tiny_model, method):
    """Gradient runs without hooks use the fused GELU / LayerNorm; the model is TL's again after, also on error;
    with a hook on the model they are not used (the hook sees TL's values)."""
    from mechinterp.core.fused import fused_gelu_tanh

    model = _gelu_new_model(tiny_model)
    seen = []

    def metric(logits):
        if logits.requires_grad:  # inside the gradient run (the probe at bind time has no grad)
            seen.append((model.blocks[0].mlp.act_fn is fused_gelu_tanh, "forward" in model.ln_final.__dict__))
        return logits[:, -1, 5]

    kwargs = {"n_steps": 4} if method == "ig" else {}
    attribute(model, PROMPT, MetricTarget(metric), method=method, warn=False, **kwargs)
    assert seen and all(s == (True, True) for s in seen)
    assert model.blocks[0].mlp.act_fn.__name__ == "gelu_new" and "forward" not in model.ln_final.__dict__

    seen.clear()
    model.add_hook("blocks.0.mlp.hook_post", lambda v, hook: v)
    try:
        attribute(model, PROMPT, MetricTarget(metric), method="saliency", warn=False)
    finally:
        model.reset_hooks()
    assert seen == [(False, False)]

    def failing(logits):
        if logits.requires_grad:
            raise RuntimeError("boom")
        return logits[:, -1, 5]

    with pytest.raises(RuntimeError, match="boom"):
        attribute(model, PROMPT, MetricTarget(failing), method=method, warn=False, **kwargs)
    assert model.blocks[0].mlp.act_fn.__name__ == "gelu_new" and "forward" not in model.ln_final.__dict__
    assert_no_hooks(model)


@pytest.mark.parametrize("target", [("w9", "w2"), Continuation("w7 w8")])
def test_fused_kernels_give_tl_values_and_gradients(tiny_model, target, monkeypatch):
    """target_gradients with the fused kernels equals it without (TL's chains) to float rounding."""
    from contextlib import nullcontext

    import mechinterp.attribution.forward as fw

    model = _gelu_new_model(tiny_model)
    prep = prepare_prompt(model, PROMPT, target)
    embed = token_embeddings(model, prep.batch_tokens).detach() * torch.linspace(0.2, 1.0, 3).view(-1, 1, 1)
    tokens = prep.batch_tokens.expand(3, -1)
    fused = fw.target_gradients(model, tokens, prep.target, embed)
    monkeypatch.setattr(fw, "fused_kernels", lambda model: nullcontext())
    plain = fw.target_gradients(model, tokens, prep.target, embed)
    torch.testing.assert_close(fused[0], plain[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fused[1], plain[1], atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("which", ["standard", *VARIANTS])
@pytest.mark.parametrize("target", [("w9", "w2"), Continuation("w7 w8")])
@pytest.mark.parametrize("prefix", [1, 3])
def test_shared_prefix_runs_once_with_the_same_values_and_gradients(tiny_model, which, target, prefix, monkeypatch):
    """Leading positions equal in every row enter as a frozen key-value cache: same scores, same gradients
    at the other positions, and no gradient at the shared ones."""
    import mechinterp.core.fastpath as fw

    calls = []
    real = fw.prefix_cache
    monkeypatch.setattr(fw, "prefix_cache", lambda model, x, batch: calls.append(x.shape[1]) or real(model, x, batch))
    model = tiny_model if which == "standard" else _variant(tiny_model, which)
    prep = prepare_prompt(model, PROMPT, target)
    base = token_embeddings(model, prep.batch_tokens).detach()
    embed = base * torch.linspace(0.2, 1.0, 3).view(-1, 1, 1)
    embed[:, :prefix] = base[:, :prefix]
    tokens = prep.batch_tokens.expand(3, -1)
    full = target_gradients(model, tokens, prep.target, embed)
    shared = target_gradients(model, tokens, prep.target, embed, shared_prefix=prefix)
    assert calls == [prefix]  # the cache path ran
    torch.testing.assert_close(shared[0], full[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared[1][:, :, prefix:], full[1][:, :, prefix:], atol=1e-5, rtol=1e-4)
    assert not shared[1][:, :, :prefix].any()
    assert_no_hooks(model)


def test_shared_prefix_is_capped_before_the_first_read_position(tiny_model):
    """A prefix reaching a position the target reads is shortened (it must stay in the batch)."""
    prep = prepare_prompt(tiny_model, PROMPT, Continuation("w7 w8"))
    embed = token_embeddings(tiny_model, prep.batch_tokens).detach().expand(2, -1, -1)
    tokens = prep.batch_tokens.expand(2, -1)
    n = len(prep.tokens)
    full = target_gradients(tiny_model, tokens, prep.target, embed)
    capped = target_gradients(tiny_model, tokens, prep.target, embed, shared_prefix=n)
    torch.testing.assert_close(capped[0], full[0], atol=1e-5, rtol=1e-5)
    first = min(prep.target.positions)
    torch.testing.assert_close(capped[1][..., first:, :], full[1][..., first:, :], atol=1e-5, rtol=1e-4)
