"""AttnLRP / CP-LRP on TransformerLens models: forward unchanged, conservation, grad × input."""

from __future__ import annotations

import pytest
import torch

from mechinterp.attribution import attribute, lrp_hooks
from mechinterp.core.hooks import assert_no_hooks

PROMPT = "w2 w8 w1 w9 w4"


def _model(tiny_model, act_fn="gelu", normalization_type="LN", biases=0.0, **zero):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=tiny_model.cfg.d_vocab,
                                  act_fn=act_fn, normalization_type=normalization_type, seed=1, device="cpu")
    model = HookedTransformer(cfg, tokenizer=tiny_model.tokenizer)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.split(".")[-1].startswith("b_") or name.endswith(".b"):
                param.copy_(biases * torch.randn_like(param))
            if name.split(".")[-1] in zero:
                param.zero_()
    return model.eval()


@pytest.mark.parametrize("variant", ["attn_lrp", "cp_lrp"])
def test_forward_output_is_bit_identical(tiny_model, variant):
    tokens = tiny_model.to_tokens(PROMPT)
    plain = tiny_model(tokens)
    with tiny_model.hooks(fwd_hooks=lrp_hooks(tiny_model, variant, epsilon=1e-3)):
        hooked = tiny_model(tokens)
    assert torch.equal(plain, hooked)
    assert_no_hooks(tiny_model)


def test_cp_lrp_conserves_relevance_on_a_bias_free_transformer(tiny_model):
    model = _model(tiny_model)
    res = attribute(model, PROMPT, "w3", method="cp_lrp", warn=False)
    value = res.metadata["target_values"][0]
    total = float(res.scores.sum() + res.metadata["positional_relevance"].sum())
    assert total == pytest.approx(value, rel=1e-4, abs=1e-5)
    biased = attribute(_model(tiny_model, biases=0.5), PROMPT, "w3", method="cp_lrp", warn=False)
    assert abs(biased.metadata["absorbed"][0]) > 1e-2  # biases absorb relevance: the check can fail


def test_attn_lrp_conserves_relevance_without_the_attention_branch(tiny_model):
    model = _model(tiny_model, W_O=True)  # attention writes nothing: LN, GELU (identity rule), linear maps
    res = attribute(model, PROMPT, "w3", method="attn_lrp", warn=False)
    total = float(res.scores.sum() + res.metadata["positional_relevance"].sum())
    assert total == pytest.approx(res.metadata["target_values"][0], rel=1e-4, abs=1e-5)


def test_lrp_equals_gradient_x_input_on_bias_free_relu_networks(tiny_model):
    # CP-LRP: attention pattern constant (W_Q = W_K = 0) and no LayerNorm -> the model is piecewise linear.
    model = _model(tiny_model, act_fn="relu", normalization_type=None, W_Q=True, W_K=True)
    gxi = attribute(model, PROMPT, "w3", method="gradient_x_input", warn=False)
    cp = attribute(model, PROMPT, "w3", method="cp_lrp", warn=False)
    torch.testing.assert_close(cp.scores, gxi.scores, atol=1e-5, rtol=1e-5)
    # AttnLRP: the uniform rule differs from the gradient only in attention; without it, they agree.
    model = _model(tiny_model, act_fn="relu", normalization_type=None, W_O=True)
    gxi = attribute(model, PROMPT, "w3", method="gradient_x_input", warn=False)
    lrp = attribute(model, PROMPT, "w3", method="attn_lrp", warn=False)
    torch.testing.assert_close(lrp.scores, gxi.scores, atol=1e-5, rtol=1e-5)


def test_attn_lrp_differs_from_gradient_where_rules_apply(tiny_model):
    gxi = attribute(tiny_model, PROMPT, "w3", method="gradient_x_input", warn=False)
    lrp = attribute(tiny_model, PROMPT, "w3", method="attn_lrp", warn=False)
    assert not torch.allclose(gxi.scores, lrp.scores, atol=1e-3)


def test_epsilon_stabiliser_moves_towards_zero_relevance(tiny_model):
    small = attribute(tiny_model, PROMPT, "w3", method="attn_lrp", epsilon=1e-9, warn=False)
    plain = attribute(tiny_model, PROMPT, "w3", method="attn_lrp", warn=False)
    big = attribute(tiny_model, PROMPT, "w3", method="attn_lrp", epsilon=10.0, warn=False)
    torch.testing.assert_close(small.scores, plain.scores, atol=1e-4, rtol=1e-4)
    assert big.scores.abs().sum() < plain.scores.abs().sum()
