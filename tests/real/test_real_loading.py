"""The real-model tier: SmolLM2-135M-Instruct loaded from its Q4_1 GGUF file."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.core.loading import model_info

pytestmark = pytest.mark.real

PROMPTS = ["The capital of France is", "The Eiffel Tower is in the city of", "One, two, three,"]


def test_gguf_matches_hugging_face_dequantized_logprobs(smollm2, smollm2_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(smollm2_path.parent), smollm2_path.name
    hf = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    for prompt in PROMPTS:
        ids = torch.tensor([tok(prompt)["input_ids"]])
        # BOS follows the checkpoint's tokenizer: our tokens are Hugging Face's, exactly
        assert torch.equal(smollm2.to_tokens(prompt), ids)
        with torch.no_grad():
            ours = smollm2(ids).log_softmax(-1)
            theirs = hf(ids).logits.log_softmax(-1)
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    top = smollm2(smollm2.to_tokens(PROMPTS[0]))[0, -1].argmax()
    assert smollm2.to_string(top) == " Paris"


def test_metadata_says_what_was_loaded(smollm2):
    info = model_info(smollm2)
    assert info["source"] == "gguf" and info["dequantized_from"] == "Q4_1"
    assert info["architecture"] == "LlamaForCausalLM" and info["n_key_value_heads"] == 3
    assert info["prepend_bos"] is False and info["bos_token"] == "<|im_start|>"
    assert smollm2.cfg.n_layers == 30 and smollm2.cfg.n_heads == 9


def test_bf16_is_the_fp32_model_rounded(smollm2, smollm2_bf16):
    tokens = smollm2.to_tokens(PROMPTS[0])
    with torch.no_grad():
        full = smollm2(tokens)[0, -1].log_softmax(-1)
        half = smollm2_bf16(tokens)[0, -1].float().log_softmax(-1)
    assert smollm2_bf16.cfg.dtype == torch.bfloat16
    assert half.argmax() == full.argmax()
    assert (half.exp() - full.exp()).abs().max() < 0.05
