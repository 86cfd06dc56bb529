"""AttnLRP / CP-LRP on Llama-style blocks: rotary attention, RMSNorm, gated MLP, grouped-query attention.

Two kinds of checks: conservation on a bias-free random Llama-style HookedTransformer (CP-LRP
exactly; AttnLRP up to what its softmax rule absorbs, measured separately), and equality with
LXT's rules applied to the Hugging Face Llama (the rule code of LXT 2.1's
``lxt/efficient/patches.py``, restated here in a few lines, since LXT is not a dependency;
``benchmarks/attribution_lrp_vs_lxt.py`` runs LXT's own files).
"""

from __future__ import annotations

import pytest
import torch

from mechinterp.attribution import attribute, lrp_hooks
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import MechinterpError

PROMPT = "w2 w8 w1 w9 w4 w4 w7"


def _llama_tl(tiny_model, act_fn="silu", dtype=torch.float32, **zero):
    """A random 2-layer Llama-style TL model: rotary, RMSNorm, gated MLP, 4 query / 2 key-value heads."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, n_key_value_heads=2, d_mlp=64, n_ctx=16,
                                  d_vocab=tiny_model.cfg.d_vocab, act_fn=act_fn, normalization_type="RMS", final_rms=True,
                                  gated_mlp=True, positional_embedding_type="rotary", rotary_dim=8, seed=3, device="cpu",
                                  dtype=dtype)
    model = HookedTransformer(cfg, tokenizer=tiny_model.tokenizer)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("W_Q", "W_K")):
                param.mul_(4)  # peaked attention patterns, so that the softmax rule matters
            if name.endswith("W_E"):
                param.mul_(5)
            if name.split(".")[-1] in zero:
                param.zero_()
    return model.eval()


def test_llama_style_model_has_the_blocks_under_test(tiny_model):
    model = _llama_tl(tiny_model)
    names = set(model.hook_dict)
    assert {"blocks.0.mlp.hook_pre_linear", "blocks.0.attn.hook_rot_q", "blocks.0.ln1.hook_scale"} <= names
    assert model.cfg.n_key_value_heads == 2 and not any("hook_pos_embed" in n for n in names)


@pytest.mark.parametrize("variant", ["attn_lrp", "cp_lrp"])
def test_forward_output_is_bit_identical_with_gated_rules(tiny_model, variant):
    model = _llama_tl(tiny_model)
    tokens = model.to_tokens(PROMPT)
    plain = model(tokens)
    with model.hooks(fwd_hooks=lrp_hooks(model, variant, epsilon=1e-3)):
        hooked = model(tokens)
    assert torch.equal(plain, hooked)
    assert_no_hooks(model)


@pytest.mark.parametrize("act_fn", ["silu", "gelu_pytorch_tanh"])
def test_cp_lrp_conserves_relevance_on_a_llama_style_model(tiny_model, act_fn):
    model = _llama_tl(tiny_model, act_fn=act_fn)
    res = attribute(model, PROMPT, ("w3", "w5"), method="cp_lrp", warn=False)
    assert float(res.scores.sum()) == pytest.approx(res.metadata["target_values"][0], rel=1e-5, abs=1e-5)
    assert abs(res.metadata["target_values"][0]) > 0.1  # a non-trivial target


def test_attn_lrp_conserves_relevance_up_to_the_softmax_rule(tiny_model):
    model = _llama_tl(tiny_model)
    res = attribute(model, PROMPT, ("w3", "w5"), method="attn_lrp", warn=False)
    value, leak = res.metadata["target_values"][0], res.metadata["softmax_absorbed"][0]
    assert float(res.scores.sum()) + leak == pytest.approx(value, rel=1e-5, abs=1e-5)
    assert abs(leak) > 1e-3 * abs(value)  # the softmax does absorb: the check above is not trivially leak = 0
    # without the attention branch nothing is absorbed: RMSNorm (scale constant) and the gated MLP
    # (identity + uniform rule) are conservative on their own
    no_attn = attribute(_llama_tl(tiny_model, W_O=True), PROMPT, ("w3", "w5"), method="attn_lrp", warn=False)
    assert float(no_attn.scores.sum()) == pytest.approx(no_attn.metadata["target_values"][0], rel=1e-5, abs=1e-5)


def test_gated_rule_is_not_the_plain_gradient(tiny_model):
    # The attention branch off and the same gated MLP: only the gated rule separates LRP from grad × input.
    model = _llama_tl(tiny_model, W_O=True)
    gxi = attribute(model, PROMPT, "w3", method="gradient_x_input", warn=False)
    for variant in ("attn_lrp", "cp_lrp"):
        lrp = attribute(model, PROMPT, "w3", method=variant, warn=False)
        assert (lrp.scores - gxi.scores).abs().max() > 1e-2 * lrp.scores.abs().max()


# --- equality with LXT's rules on a Hugging Face Llama ----------------------------------------------------

def _lxt_patched_llama(monkeypatch, variant):
    """Patch transformers' Llama as LXT 2.1's ``lxt/efficient/models/llama.py`` does, with its rule code."""
    import transformers.models.llama.modeling_llama as ml

    class DivideGradient(torch.autograd.Function):  # lxt.efficient.rules.divide_gradient_fn
        @staticmethod
        def forward(ctx, x, factor):
            ctx.factor = factor
            return x

        @staticmethod
        def backward(ctx, grad):
            return grad / ctx.factor, None

    class IdentityRule(torch.autograd.Function):  # lxt.efficient.rules.identity_rule_implicit_fn
        @staticmethod
        def forward(ctx, fn, x, epsilon=1e-10):
            out = fn(x)
            ctx.save_for_backward(out / (x + epsilon))
            return out

        @staticmethod
        def backward(ctx, grad):
            return None, ctx.saved_tensors[0] * grad, None

    def rms_norm_forward(self, h):  # patches.rms_norm_forward
        dtype = h.dtype
        h = h.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon).detach()
        return self.weight * h.to(dtype)

    def gated_mlp_forward(self, x):  # patches.gated_mlp_forward
        gate = IdentityRule.apply(self.act_fn, self.gate_proj(x))
        return self.down_proj(DivideGradient.apply(gate * self.up_proj(x), 2))

    def cp_gated_mlp_forward(self, x):  # patches.cp_gated_mlp_forward
        return self.down_proj(self.act_fn(self.gate_proj(x).detach()) * self.up_proj(x))

    eager = ml.eager_attention_forward

    def attention(module, q, k, v, *args, **kwargs):  # patches.wrap_attention_forward / cp_wrap_attention_forward
        if variant == "attn_lrp":
            q, k, v = DivideGradient.apply(q, 4), DivideGradient.apply(k, 4), DivideGradient.apply(v, 2)
        else:
            q, k = q.detach(), k.detach()
        return eager(module, q, k, v, *args, **kwargs)

    monkeypatch.setattr(ml.LlamaRMSNorm, "forward", rms_norm_forward)
    monkeypatch.setattr(ml.LlamaMLP, "forward", gated_mlp_forward if variant == "attn_lrp" else cp_gated_mlp_forward)
    monkeypatch.setattr(ml, "eager_attention_forward", attention)


@pytest.fixture(scope="module")
def hf_llama(tmp_path_factory):
    """A random 3-layer Hugging Face Llama (GQA 4/2 heads, SwiGLU, non-unit RMSNorm weights) and its TL conversion."""
    from transformers import LlamaConfig, LlamaForCausalLM

    import mechinterp

    cfg = LlamaConfig(vocab_size=48, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=32, hidden_act="silu", attn_implementation="eager",
                      tie_word_embeddings=False, rms_norm_eps=1e-5)
    torch.manual_seed(0)
    hf = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "q_proj" in name or "k_proj" in name:
                p.mul_(3)
            if "embed_tokens" in name:
                p.mul_(5)
            if "norm" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("llama")
    hf.save_pretrained(folder)
    return hf, mechinterp.load(folder)


TOKENS = torch.tensor([0, 5, 9, 3, 7, 7, 20, 11, 30, 2])
GOOD, BAD = 4, 17


@pytest.mark.parametrize("variant", ["attn_lrp", "cp_lrp"])
def test_equals_lxt_rules_on_a_llama(hf_llama, monkeypatch, variant):
    from mechinterp.attribution.targets import Contrast

    hf, tl = hf_llama
    ours = attribute(tl, TOKENS, Contrast(GOOD, BAD), method=variant, warn=False).scores[0]
    plain = attribute(tl, TOKENS, Contrast(GOOD, BAD), method="gradient_x_input", warn=False).scores[0]
    with monkeypatch.context() as patch:
        _lxt_patched_llama(patch, variant)
        embed = hf.model.embed_tokens(TOKENS[None]).detach().requires_grad_(True)
        logits = hf(inputs_embeds=embed).logits[0, -1]
        (logits[GOOD] - logits[BAD]).backward()
    theirs = (embed.grad * embed).sum(-1)[0].detach()
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    assert (plain - theirs).abs().max() > 1e-2 * theirs.abs().max()  # the rules matter here


def test_lrp_runs_on_bf16_and_fp16_llama_style_models(tiny_model):
    full = attribute(_llama_tl(tiny_model), PROMPT, ("w3", "w5"), method="attn_lrp", warn=False)
    for dtype in (torch.bfloat16, torch.float16):
        model = _llama_tl(tiny_model, dtype=dtype)
        for variant in ("attn_lrp", "cp_lrp"):
            res = attribute(model, PROMPT, ("w3", "w5"), method=variant, warn=False)
            assert torch.isfinite(res.scores).all() and res.scores.dtype == torch.float32
        res = attribute(model, PROMPT, ("w3", "w5"), method="attn_lrp", warn=False)
        scale = full.scores.abs().max()
        assert (res.scores - full.scores).abs().max() < 0.1 * scale, dtype  # bf16 rounding, not a different rule
        assert_no_hooks(model)


def test_unsupported_blocks_raise(tiny_model):
    model = _llama_tl(tiny_model)
    model.cfg.attn_scores_soft_cap = 50.0
    with pytest.raises(MechinterpError, match="attn_scores_soft_cap"):
        attribute(model, PROMPT, "w3", method="attn_lrp", warn=False)
    assert_no_hooks(model)
