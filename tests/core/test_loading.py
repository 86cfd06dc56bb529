"""mechinterp.load: local Hugging Face checkpoints offline, zoo folders, hub names offline."""

from __future__ import annotations

import time

import pytest
import torch

import mechinterp
from mechinterp.errors import ModelLoadError, OfflineError


def _tiny_checkpoints():
    from transformers import (
        GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM,
        Qwen2Config, Qwen2ForCausalLM,
    )

    common = dict(vocab_size=48, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=32)
    return {
        "gpt2": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=48, n_positions=32, n_embd=32, n_layer=2, n_head=4)),
        "neox": lambda: GPTNeoXForCausalLM(GPTNeoXConfig(intermediate_size=64, **common)),
        # grouped-query attention: 4 query heads share 2 key/value heads
        "llama": lambda: LlamaForCausalLM(LlamaConfig(intermediate_size=64, num_key_value_heads=2, **common)),
        "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(intermediate_size=64, num_key_value_heads=2, **common)),
    }


@pytest.mark.parametrize("family", ["gpt2", "neox", "llama", "qwen2"])
def test_local_checkpoint_matches_hugging_face_offline(family, tmp_path, no_network):
    from mechinterp.zoo.tokenizer import word_tokenizer

    torch.manual_seed(0)
    hf_model = _tiny_checkpoints()[family]().eval()
    folder = tmp_path / f"my-{family}-llama-gemma"  # path words must not steer the architecture
    hf_model.save_pretrained(folder)
    word_tokenizer([f"w{i}" for i in range(45)], folder)
    model = mechinterp.load(folder)
    tokens = torch.tensor([[1, 5, 9, 3, 7, 7, 20, 11], [1, 30, 2, 8, 8, 4, 6, 44]])
    with torch.no_grad():
        ours = model(tokens).log_softmax(-1)
        theirs = hf_model(tokens).logits.log_softmax(-1)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    if family != "qwen2":  # transformers swaps in Qwen2's own tokenizer class for a qwen2 config
        assert model.to_str_tokens("w3 w4")[-2:] == ["w3", "w4"]


def test_weight_processing_is_switchable(tmp_path, no_network):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(vocab_size=48, n_positions=32, n_embd=32, n_layer=1, n_head=4)).save_pretrained(tmp_path)
    processed = mechinterp.load(tmp_path)
    raw = mechinterp.load(tmp_path, fold_ln=False, center_writing_weights=False, center_unembed=False)
    assert "blocks.0.ln1.w" in raw.state_dict() and "blocks.0.ln1.w" not in processed.state_dict()
    tokens = torch.tensor([[0, 3, 4, 5]])
    torch.testing.assert_close(raw(tokens).log_softmax(-1), processed(tokens).log_softmax(-1), atol=1e-4, rtol=0)


def test_zoo_format_round_trip(tiny_model, tmp_path, no_network):
    mechinterp.zoo.save_model(tiny_model, tmp_path / "m", card="# tiny\n")
    loaded = mechinterp.load(tmp_path / "m")
    tokens = tiny_model.to_tokens(["w1 w2 w3 w4"])
    torch.testing.assert_close(loaded(tokens).log_softmax(-1), tiny_model(tokens).log_softmax(-1), atol=1e-5, rtol=0)
    assert loaded.to_str_tokens("w1 w2") == ["<bos>", "w1", "w2"]


def test_hub_name_offline_fails_fast_with_instructions(no_network):
    start = time.perf_counter()
    with pytest.raises(OfflineError, match="local-dir"):
        mechinterp.load("gpt2")
    assert time.perf_counter() - start < 5


def test_unknown_names_and_folders():
    with pytest.raises(ModelLoadError, match="No zoo model named"):
        mechinterp.load("zoo:does-not-exist")
    with pytest.raises(ModelLoadError, match="not a model name TransformerLens knows"):
        mechinterp.load("definitely-not-a-model-xyz")
    with pytest.raises(ModelLoadError, match="dtype"):
        mechinterp.load("zoo:whatever", dtype="float77")


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        mechinterp.load(tmp_path)


def _tiny_llama_folder(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from mechinterp.zoo.tokenizer import word_tokenizer

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=48, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=32)
    hf = LlamaForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path)
    word_tokenizer([f"w{i}" for i in range(45)], tmp_path)
    return hf


def test_every_keyword_is_honoured_or_rejected(tmp_path, no_network):
    _tiny_llama_folder(tmp_path)
    model = mechinterp.load(tmp_path, ungroup_grouped_query_attention=True, use_attn_result=True)
    assert model.cfg.ungroup_grouped_query_attention and model.cfg.use_attn_result
    with pytest.raises(ModelLoadError, match="unknown keyword"):
        mechinterp.load(tmp_path, not_a_setting=1)
    with pytest.raises(ModelLoadError, match="unknown keyword"):
        mechinterp.load("zoo:attn-only-2l", not_a_setting=1)
    with pytest.raises(ModelLoadError, match="fixed by the checkpoint"):
        mechinterp.load(tmp_path, d_model=8)
    zoo = mechinterp.load("zoo:attn-only-2l", use_attn_result=True)
    assert zoo.cfg.use_attn_result


def test_bos_follows_the_checkpoints_tokenizer(tmp_path, no_network):
    from mechinterp.core.loading import model_info

    _tiny_llama_folder(tmp_path)  # the zoo's word tokenizer adds no BOS
    model = mechinterp.load(tmp_path)
    assert model.cfg.default_prepend_bos is False
    assert model_info(model)["prepend_bos"] is False and model_info(model)["source"] == "hf-folder"
    assert model.to_str_tokens("w3 w4") == ["w3", "w4"]
    forced = mechinterp.load(tmp_path, default_prepend_bos=True)
    assert forced.to_str_tokens("w3 w4") == ["<bos>", "w3", "w4"]
    assert "passed to load" in model_info(forced)["bos_source"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, "bf16", "float16"])
def test_reduced_precision_is_the_fp32_model_rounded(tmp_path, dtype, no_network):
    hf = _tiny_llama_folder(tmp_path)
    model = mechinterp.load(tmp_path, dtype=dtype)
    assert model.cfg.dtype in (torch.bfloat16, torch.float16)
    assert all(p.dtype == model.cfg.dtype for p in model.parameters())
    tokens = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.no_grad():
        ours = model(tokens).float().log_softmax(-1)
        theirs = hf(tokens).logits.log_softmax(-1)
    torch.testing.assert_close(ours, theirs, atol=0.1, rtol=0)


def test_non_gguf_file_is_rejected(tmp_path):
    stray = tmp_path / "weights.bin"
    stray.write_bytes(b"\0" * 16)
    with pytest.raises(ModelLoadError, match="not a .gguf"):
        mechinterp.load(stray)
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not gguf")
    with pytest.raises(ModelLoadError, match="GGUF"):
        mechinterp.load(bad)


def test_metadata_records_weight_processing(tmp_path, no_network):
    from mechinterp.core.loading import model_info

    _tiny_llama_folder(tmp_path)
    info = model_info(mechinterp.load(tmp_path, center_unembed=False))
    assert info["weight_processing"]["fold_ln"] == {"asked": True, "applied": True}
    assert info["weight_processing"]["center_unembed"] == {"asked": False, "applied": False}


def test_gguf_of_an_architecture_transformers_cannot_read_is_a_load_error(tmp_path):
    """gguf.py's wrapping of transformers' errors: a well-formed GGUF file of an unknown architecture."""
    import numpy as np
    from gguf import GGUFWriter

    path = tmp_path / "odd.gguf"
    writer = GGUFWriter(str(path), "notanarch")
    writer.add_file_type(0)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelLoadError, match="could not read odd.gguf .architecture 'notanarch'.*families"):
        mechinterp.load(path)


def test_a_conversion_failure_is_a_load_error_naming_the_supported_architectures(tmp_path, monkeypatch, no_network):
    """loading.py's wrapping of TransformerLens conversion errors (a checkpoint TL's converter rejects)."""
    from mechinterp.core import architectures

    _tiny_llama_folder(tmp_path)

    def rejects(*args, **kwargs):
        raise NotImplementedError("this variant is not converted")

    monkeypatch.setattr(architectures, "tl_config", rejects)
    with pytest.raises(ModelLoadError, match="could not convert.*not converted.*LlamaForCausalLM"):
        mechinterp.load(tmp_path)


@pytest.mark.parametrize("damage", ["truncated weights", "garbled config", "garbled tokenizer"])
def test_a_damaged_checkpoint_folder_is_a_load_error_naming_the_file(tmp_path, damage, no_network):
    """Issue 16: a truncated download gave a raw SafetensorError / JSONDecodeError."""
    _tiny_llama_folder(tmp_path)
    if damage == "truncated weights":
        data = (tmp_path / "model.safetensors").read_bytes()
        (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "garbled config":
        (tmp_path / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], ')
    else:
        (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="damaged or incomplete") as info:
        mechinterp.load(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_a_file_path_names_the_folder_to_pass_instead(tmp_path):
    _tiny_llama_folder(tmp_path)
    with pytest.raises(ModelLoadError, match="pass the folder that holds it") as info:
        mechinterp.load(tmp_path / "config.json")
    assert "has no config.json" not in str(info.value)
    with pytest.raises(ModelLoadError, match="is a file; pass the folder"):
        mechinterp.core.load_local_checkpoint(tmp_path / "config.json")


def test_a_device_this_machine_lacks_is_a_load_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        mechinterp.load("zoo:attn-only-2l", device="cuda")
