"""The hooks EK-FAC reads give each weight matrix's exact gradient: Σ_t δ_t a_tᵀ = autograd's."""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.hooks import active_hooks
from mechinterp.errors import MechinterpError
from mechinterp.influence import as_training_set, kronecker_layers, per_example_grads, select_params
from mechinterp.influence.ekfac import capture


def _data(model, n=3, pos=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    toks = torch.randint(3, model.cfg.d_vocab, (n, pos), generator=g)
    return as_training_set(model, [toks[0].tolist(), toks[1, :5].tolist(), toks[2].tolist()])


@pytest.mark.parametrize("affine", [False, True])
def test_hook_outer_products_equal_autograd_gradients(tiny_model, affine):
    if affine:  # LayerNorm weights away from 1 and 0: TL's hook_normalized is taken before them
        import copy

        tiny_model = copy.deepcopy(tiny_model)
        with torch.no_grad():
            for n, p in tiny_model.named_parameters():
                if ".ln" in n or n.startswith("ln_final"):
                    p.add_(torch.randn_like(p) * 0.5)
    train = _data(tiny_model)
    names = select_params(tiny_model)
    assert len(names) == 2 * 6 + 1  # W_Q W_K W_V W_O W_in W_out per layer, and W_U
    layers = kronecker_layers(tiny_model, names)
    acts = capture(tiny_model, layers, train.tokens, train.lengths, train.tokens[:, 1:])
    per_ex = per_example_grads(tiny_model, names, train.tokens, train.loss_mask)
    for layer in layers:
        a, d = acts[layer.param]
        g = torch.einsum("bpo,bpi->boi", d, a)
        want = layer.to_matrix(per_ex[layer.param])
        torch.testing.assert_close(g, want, atol=1e-5, rtol=1e-4)
        back = layer.from_matrix(want, tuple(per_ex[layer.param].shape[1:]))
        torch.testing.assert_close(back, per_ex[layer.param])
    assert active_hooks(tiny_model) == []


def test_vmap_gradients_equal_a_loop_of_backward_passes(tiny_model):
    train = _data(tiny_model)
    names = select_params(tiny_model, "all")
    per_ex = per_example_grads(tiny_model, names, train.tokens, train.loss_mask)
    params = dict(tiny_model.named_parameters())
    for i in range(len(train)):
        n = int(train.lengths[i])
        logits = tiny_model(train.tokens[i : i + 1, :n])[0]
        loss = -logits[:-1].log_softmax(-1).gather(-1, train.tokens[i, 1:n, None]).sum()
        grads = torch.autograd.grad(loss, [params[k] for k in names])
        for k, g in zip(names, grads):
            torch.testing.assert_close(per_ex[k][i], g, atol=1e-5, rtol=1e-4)


def test_non_matrix_parameters_are_refused_by_ekfac(tiny_model):
    with pytest.raises(MechinterpError, match="not a weight matrix"):
        kronecker_layers(tiny_model, ["blocks.0.ln1.w"])
    with pytest.raises(MechinterpError, match="No parameter"):
        select_params(tiny_model, ["blocks.9"])


def test_llama_shaped_model_gqa_gated_rms_rotary():
    """Grouped-query attention (_W_K, _W_V), a gated MLP (W_gate) and RMSNorm with weights."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=1, d_model=16, n_heads=4, n_key_value_heads=2, d_head=4, d_mlp=32, n_ctx=16, d_vocab=20,
        act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary", gated_mlp=True, final_rms=True, seed=1,
    )
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(".w"):
                p.add_(torch.randn_like(p) * 0.5)
    train = _data(model)
    names = select_params(model)
    assert {"blocks.0.attn._W_K", "blocks.0.attn._W_V", "blocks.0.mlp.W_gate"} <= set(names)
    layers = kronecker_layers(model, names)
    acts = capture(model, layers, train.tokens, train.lengths, train.tokens[:, 1:])
    per_ex = per_example_grads(model, names, train.tokens, train.loss_mask)
    for layer in layers:
        a, d = acts[layer.param]
        torch.testing.assert_close(torch.einsum("bpo,bpi->boi", d, a), layer.to_matrix(per_ex[layer.param]), atol=1e-5, rtol=1e-4)
