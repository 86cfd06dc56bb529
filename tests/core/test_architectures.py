"""mechinterp.core.architectures: every supported architecture converts and matches Hugging Face, offline.

Gemma 1/2/3 and OLMo 1/2 are configured by TransformerLens only from their official
model names; a local checkpoint of any size must still get its family's config with its
own shapes. Each tiny checkpoint below is random (its norm weights too, so Gemma's
``1 + w`` RMSNorm matters), saved to a folder, loaded with ``mechinterp.load`` and
compared with the Hugging Face model on sequences longer than every sliding window.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mechinterp
from mechinterp.core.architectures import check_architecture, supported_architectures, tl_config
from mechinterp.errors import ModelLoadError

_C = dict(vocab_size=48, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
          max_position_embeddings=64)
_GQA = dict(intermediate_size=64, num_key_value_heads=2, **_C)
# head_dim (16) and query_pre_attn_scalar (32) differ from hidden/heads (8) so a wrong attention
# scale or head size shows; small softcaps so that capping changes the outputs (Gemma 3's HF
# models ignore the attention cap, and the multimodal one the final cap too: so must TL).
_GEMMA = dict(head_dim=16, **_GQA)
_CAPS = dict(query_pre_attn_scalar=32, attn_logit_softcapping=1.0, final_logit_softcapping=3.0)
_WINDOW = 4  # the test sequences have 12 tokens
_TOKENS = torch.tensor([[1, 5, 9, 3, 7, 7, 20, 11, 4, 2, 30, 31], [1, 30, 2, 8, 8, 4, 6, 44, 12, 13, 14, 15]])


def _families():
    import transformers as T

    windowed = dict(sliding_window=_WINDOW)
    return {
        "gpt2": lambda: T.GPT2LMHeadModel(T.GPT2Config(
            vocab_size=48, n_positions=64, n_embd=32, n_layer=2, n_head=4)),
        "gpt-neo": lambda: T.GPTNeoForCausalLM(T.GPTNeoConfig(
            vocab_size=48, max_position_embeddings=64, hidden_size=32, num_layers=2, num_heads=4,
            attention_types=[[["global", "local"], 1]], window_size=_WINDOW)),
        "gpt-neox": lambda: T.GPTNeoXForCausalLM(T.GPTNeoXConfig(intermediate_size=64, **_C)),
        "gpt-j": lambda: T.GPTJForCausalLM(T.GPTJConfig(
            vocab_size=48, n_positions=64, n_embd=32, n_layer=2, n_head=4, rotary_dim=4)),
        "opt": lambda: T.OPTForCausalLM(T.OPTConfig(
            vocab_size=48, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64,
            max_position_embeddings=64, word_embed_proj_dim=32)),
        "bloom": lambda: T.BloomForCausalLM(T.BloomConfig(
            vocab_size=48, hidden_size=32, n_layer=2, n_head=4)),
        "llama": lambda: T.LlamaForCausalLM(T.LlamaConfig(**_GQA)),
        "mistral": lambda: T.MistralForCausalLM(T.MistralConfig(**windowed, **_GQA)),
        "mixtral": lambda: T.MixtralForCausalLM(T.MixtralConfig(
            num_local_experts=4, num_experts_per_tok=2, **_GQA)),
        "qwen2": lambda: T.Qwen2ForCausalLM(T.Qwen2Config(**_GQA)),
        "qwen3": lambda: T.Qwen3ForCausalLM(T.Qwen3Config(head_dim=8, **_GQA)),
        "phi": lambda: T.PhiForCausalLM(T.PhiConfig(intermediate_size=64, partial_rotary_factor=0.5, **_C)),
        "phi3": lambda: T.Phi3ForCausalLM(T.Phi3Config(pad_token_id=0, **windowed, **_GQA)),
        "gemma": lambda: T.GemmaForCausalLM(T.GemmaConfig(**_GEMMA)),
        "gemma2": lambda: T.Gemma2ForCausalLM(T.Gemma2Config(**_CAPS, **windowed, **_GEMMA)),
        "gemma3": lambda: T.Gemma3ForCausalLM(T.Gemma3TextConfig(
            sliding_window_pattern=2, **_CAPS, **windowed, **_GEMMA)),
        "gemma3-multimodal": lambda: T.Gemma3ForConditionalGeneration(T.Gemma3Config(
            text_config=dict(rope_scaling={"rope_type": "linear", "factor": 4.0}, **_CAPS,
                             sliding_window_pattern=2, **windowed, **_GEMMA),
            vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                               num_attention_heads=2, image_size=28, patch_size=14),
            mm_tokens_per_image=4, boi_token_index=45, eoi_token_index=46, image_token_index=47)),
        "apertus": lambda: T.ApertusForCausalLM(T.ApertusConfig(**_GQA)),
        "olmo": lambda: T.OlmoForCausalLM(T.OlmoConfig(intermediate_size=64, clip_qkv=0.5, **_C)),
        "olmo2": lambda: T.Olmo2ForCausalLM(T.Olmo2Config(intermediate_size=64, **_C)),
        "olmo3": lambda: T.Olmo3ForCausalLM(T.Olmo3Config(**windowed, **_GQA)),
        "olmoe": lambda: T.OlmoeForCausalLM(T.OlmoeConfig(num_experts=4, num_experts_per_tok=2, **_GQA)),
    }


def _random(build):
    torch.manual_seed(0)
    hf = build().eval()
    with torch.no_grad():  # norms start at 0 (Gemma) or 1: move them so a wrong norm convention shows
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return hf


def _config_of(folder):
    return json.loads((folder / "config.json").read_text())


def _log_probs(model, tokens=_TOKENS):
    with torch.no_grad():
        out = model(tokens)
    return (out.logits if hasattr(out, "logits") else out).log_softmax(-1)


def _with_config(hf, **changes):
    """The same weights under a changed config (to show that a setting changes the output)."""
    config = hf.config.__class__.from_dict({**hf.config.to_dict(), **changes})
    other = type(hf)(config).eval()
    other.load_state_dict(hf.state_dict())
    return other


_ARCHITECTURE = {
    "gpt2": "GPT2LMHeadModel", "gpt-neo": "GPTNeoForCausalLM", "gpt-neox": "GPTNeoXForCausalLM",
    "gpt-j": "GPTJForCausalLM", "opt": "OPTForCausalLM", "bloom": "BloomForCausalLM",
    "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "mixtral": "MixtralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM", "phi": "PhiForCausalLM", "phi3": "Phi3ForCausalLM",
    "gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM", "gemma3": "Gemma3ForCausalLM",
    "gemma3-multimodal": "Gemma3ForConditionalGeneration",
    "apertus": "ApertusForCausalLM", "olmo": "OlmoForCausalLM", "olmo2": "Olmo2ForCausalLM",
    "olmo3": "Olmo3ForCausalLM", "olmoe": "OlmoeForCausalLM",
}


def test_every_supported_architecture_has_a_checkpoint_test():
    assert set(_ARCHITECTURE) == set(_families())
    assert sorted(_ARCHITECTURE.values()) == sorted(supported_architectures())


@pytest.mark.parametrize("family", list(_families()))
def test_local_checkpoint_matches_hugging_face(family, tmp_path, no_network):
    from mechinterp.zoo.tokenizer import word_tokenizer

    hf = _random(_families()[family])
    folder = tmp_path / "my-checkpoint"
    hf.save_pretrained(folder)
    word_tokenizer([f"w{i}" for i in range(45)], folder)
    model = mechinterp.load(folder)
    assert model.cfg.original_architecture == hf.config.architectures[0] == _ARCHITECTURE[family]
    torch.testing.assert_close(_log_probs(model), _log_probs(hf), atol=1e-4, rtol=0)
    if family != "qwen2":  # transformers swaps in Qwen2's own tokenizer class for a qwen2 config
        assert model.to_str_tokens("w3 w4") == ["w3", "w4"]
    if getattr(hf.config.get_text_config(), "sliding_window", None) == _WINDOW:
        # the window matters on these sequences: the same weights without it predict differently
        wide = _with_config(hf, sliding_window=64) if family != "gemma3-multimodal" else None
        if wide is not None:
            assert (_log_probs(wide) - _log_probs(hf)).abs().max() > 1e-3
        assert model.cfg.use_local_attn and model.cfg.window_size == _WINDOW


def test_gemma_config_takes_the_checkpoints_shapes(tmp_path, no_network):
    import transformers as T

    config = T.Gemma2Config(query_pre_attn_scalar=16, sliding_window=_WINDOW, final_logit_softcapping=7.0,
                            attn_logit_softcapping=9.0, rms_norm_eps=1e-5, rope_theta=500.0, **_GEMMA)
    config.architectures = ["Gemma2ForCausalLM"]
    config.save_pretrained(tmp_path)
    cfg, _ = tl_config(tmp_path, _config_of(tmp_path), device="cpu", fold_ln=True, dtype=torch.float32)
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.n_key_value_heads, cfg.d_head, cfg.d_mlp, cfg.d_vocab) == (
        32, 2, 4, 2, 16, 64, 48)
    assert (cfg.attn_scale, cfg.output_logits_soft_cap, cfg.attn_scores_soft_cap) == (4.0, 7.0, 9.0)
    assert (cfg.eps, cfg.rotary_base, cfg.window_size, cfg.attn_types) == (1e-5, 500.0, _WINDOW, ["local", "global"])
    assert cfg.n_ctx == 64 and cfg.normalization_type == "RMSPre" and cfg.use_normalization_before_and_after


def _official_configs():
    import transformers as T

    gemma3_text = dict(vocab_size=262144, num_key_value_heads=1, max_position_embeddings=32768, sliding_window=512)
    gemma3_mm = dict(vocab_size=262208, sliding_window=1024, rope_scaling={"rope_type": "linear", "factor": 8.0})
    return {
        "google/gemma-2b": ("GemmaForCausalLM", lambda: T.GemmaConfig(
            vocab_size=256000, hidden_size=2048, intermediate_size=16384, num_hidden_layers=18,
            num_attention_heads=8, num_key_value_heads=1, head_dim=256, hidden_act="gelu")),
        "google/gemma-2-2b": ("Gemma2ForCausalLM", T.Gemma2Config),
        "google/gemma-2-27b": ("Gemma2ForCausalLM", lambda: T.Gemma2Config(
            hidden_size=4608, intermediate_size=36864, num_hidden_layers=46, num_attention_heads=32,
            num_key_value_heads=16, head_dim=128, query_pre_attn_scalar=144)),
        "google/gemma-3-1b-pt": ("Gemma3ForCausalLM", lambda: T.Gemma3TextConfig(
            hidden_size=1152, intermediate_size=6912, num_hidden_layers=26, num_attention_heads=4, **gemma3_text)),
        "google/gemma-3-4b-pt": ("Gemma3ForConditionalGeneration", lambda: T.Gemma3Config(text_config=dict(
            hidden_size=2560, intermediate_size=10240, num_hidden_layers=34, num_attention_heads=8,
            num_key_value_heads=4, **gemma3_mm))),
        "google/gemma-3-27b-pt": ("Gemma3ForConditionalGeneration", lambda: T.Gemma3Config(text_config=dict(
            hidden_size=5376, intermediate_size=21504, num_hidden_layers=62, num_attention_heads=32,
            num_key_value_heads=16, head_dim=128, query_pre_attn_scalar=168, **gemma3_mm))),
    }


# Where TL's official entry disagrees with Hugging Face's model, the checkpoint's config wins:
# GemmaConfig turns the legacy hidden_act "gelu" into the tanh approximation, and Gemma 3 27B
# scales attention scores by query_pre_attn_scalar=168 ** -0.5, not head_dim=128 ** -0.5.
_DELIBERATE = {
    "google/gemma-2b": {"act_fn": ("gelu_pytorch_tanh", "gelu")},
    "google/gemma-3-27b-pt": {"attn_scale": (pytest.approx(168**0.5), pytest.approx(128**0.5))},
}


@pytest.mark.parametrize("name", list(_official_configs()))
def test_official_sizes_reproduce_transformer_lens_config(name, tmp_path, no_network):
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    arch, build = _official_configs()[name]
    config = build()
    config.architectures = [arch]
    config.save_pretrained(tmp_path)
    ours, _ = tl_config(tmp_path, _config_of(tmp_path), device="cpu", fold_ln=True, dtype=torch.float32)
    theirs = get_pretrained_model_config(name, device="cpu", fold_ln=True)
    a, b = ours.to_dict(), theirs.to_dict()
    diff = {k: (a.get(k), b.get(k)) for k in set(a) | set(b)
            if a.get(k) != b.get(k) and k not in ("model_name", "tokenizer_name")}
    assert diff == _DELIBERATE.get(name, {})


def test_unsupported_architecture_names_the_supported_ones(tmp_path, no_network):
    from transformers import StableLmConfig, StableLmForCausalLM

    StableLmForCausalLM(StableLmConfig(intermediate_size=64, **_C)).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="cannot convert architecture 'StableLmForCausalLM'") as info:
        mechinterp.load(tmp_path)
    for name in ("Gemma2ForCausalLM", "LlamaForCausalLM", "Qwen2ForCausalLM", "GPT2LMHeadModel"):
        assert name in str(info.value)


def test_unsupported_architecture_fails_before_the_weights_are_read(tmp_path):
    from transformers import FalconConfig

    config = FalconConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=48)
    config.architectures = ["FalconForCausalLM"]
    config.save_pretrained(tmp_path)  # no weights at all
    with pytest.raises(ModelLoadError, match="cannot convert architecture 'FalconForCausalLM'"):
        mechinterp.load(tmp_path)


def test_config_without_architectures_uses_its_model_type(tmp_path, no_network):
    import transformers as T

    hf = _random(lambda: T.Gemma2ForCausalLM(T.Gemma2Config(**_CAPS, sliding_window=_WINDOW, **_GEMMA)))
    hf.save_pretrained(tmp_path)
    config = _config_of(tmp_path)
    del config["architectures"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = mechinterp.load(tmp_path)
    assert model.cfg.original_architecture == "Gemma2ForCausalLM"
    torch.testing.assert_close(_log_probs(model), _log_probs(hf), atol=1e-4, rtol=0)
    assert check_architecture({"model_type": "llama"}) == "LlamaForCausalLM"


def test_architectures_tl_dispatches_but_cannot_convert_say_why():
    with pytest.raises(ModelLoadError, match="does not reproduce Hugging Face"):
        check_architecture({"architectures": ["GptOssForCausalLM"]})
    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        check_architecture({"architectures": ["QWenLMHeadModel"]})
    with pytest.raises(ModelLoadError, match="no known model_type"):
        check_architecture({"model_type": "not-a-model"})
    assert check_architecture({"architectures": ["Gemma3ForCausalLM"]}) == "Gemma3ForCausalLM"


_REFUSED = {
    "bidirectional attention": ("Gemma2ForCausalLM", "Gemma2Config", dict(use_bidirectional_attention=True, **_GEMMA)),
    "rope scaling 'linear'": ("GemmaForCausalLM", "GemmaConfig",
                              dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}, **_GEMMA)),
    "grouped-query attention": ("Olmo2ForCausalLM", "Olmo2Config", _GQA),
}


@pytest.mark.parametrize("message", list(_REFUSED))
def test_features_tl_cannot_represent_are_refused(message, tmp_path, no_network):
    import transformers as T

    arch, config_class, kwargs = _REFUSED[message]
    hf_config = getattr(T, config_class)(**kwargs)
    hf_config.architectures = [arch]
    hf_config.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=message):
        tl_config(Path(tmp_path), hf_config.to_dict(), device="cpu", fold_ln=True, dtype=torch.float32)


_L3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
       "original_max_position_embeddings": 8, "rope_theta": 5e5}


def _variants():
    """Settings that TL 3.9's own config branches miss under transformers 5 (or ignore)."""
    import transformers as T

    return {
        "llama-3-rope": lambda: T.LlamaForCausalLM(T.LlamaConfig(rope_parameters=_L3, **_GQA)),
        "llama-linear-rope": lambda: T.LlamaForCausalLM(T.LlamaConfig(
            rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 1e4}, **_GQA)),
        "llama-head-dim": lambda: T.LlamaForCausalLM(T.LlamaConfig(head_dim=16, **_GQA)),
        "qwen2-sliding-window": lambda: T.Qwen2ForCausalLM(T.Qwen2Config(
            use_sliding_window=True, sliding_window=_WINDOW, max_window_layers=1, **_GQA)),
        "phi3-partial-rotary": lambda: T.Phi3ForCausalLM(T.Phi3Config(pad_token_id=0, partial_rotary_factor=0.5, **_GQA)),
        "neox-sequential": lambda: T.GPTNeoXForCausalLM(T.GPTNeoXConfig(
            intermediate_size=64, use_parallel_residual=False, rotary_pct=0.25, **_C)),
        "gemma3-rope-thetas": lambda: T.Gemma3ForCausalLM(T.Gemma3TextConfig(
            sliding_window=_WINDOW, sliding_window_pattern=2, **_GEMMA,
            rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 50.0},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 7.0}})),
    }


@pytest.mark.parametrize("variant", list(_variants()))
def test_checkpoint_variants_match_hugging_face(variant, tmp_path, no_network):
    hf = _random(_variants()[variant])
    hf.save_pretrained(tmp_path)
    model = mechinterp.load(tmp_path)
    tokens = torch.randint(0, 48, (2, 40), generator=torch.Generator().manual_seed(1))  # past the rope's 8 positions
    torch.testing.assert_close(_log_probs(model, tokens), _log_probs(hf, tokens), atol=1e-4, rtol=0)


def test_settings_tl_would_drop_are_refused(tmp_path, no_network):
    import transformers as T

    for name, config, message in [
        ("bias", T.LlamaConfig(attention_bias=True, **_GQA), "attention or MLP biases"),
        ("longrope", T.Phi3Config(pad_token_id=0, original_max_position_embeddings=16, rope_parameters={
            "rope_type": "longrope", "short_factor": [1.0] * 4, "long_factor": [2.0] * 4, "rope_theta": 1e4}, **_GQA),
         "rope scaling 'longrope'"),
    ]:
        config.architectures = [type(config).__name__.replace("Config", "ForCausalLM")]
        config.save_pretrained(tmp_path / name)
        with pytest.raises(ModelLoadError, match=message):
            tl_config(tmp_path / name, config.to_dict(), device="cpu", fold_ln=True, dtype=torch.float32)
