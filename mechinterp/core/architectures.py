"""Which TransformerLens config a local checkpoint gets.

TransformerLens 3.9 builds a ``HookedTransformerConfig`` from a Hugging Face config by
its ``architectures[0]`` entry, except for families it configures only by their official
model name. :func:`tl_config` gives a local checkpoint the config TL would give it, so
:func:`mechinterp.load` can convert folders and GGUF files of every architecture TL can
convert, with no network access.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["tl_config", "supported_architectures"]

# Hugging Face causal-LM architectures TransformerLens 3.9 converts (its
# get_pretrained_state_dict dispatch, language models only).
_SUPPORTED = (
    "GPT2LMHeadModel", "GPTNeoForCausalLM", "GPTNeoXForCausalLM", "GPTJForCausalLM", "OPTForCausalLM",
    "BloomForCausalLM", "LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "GptOssForCausalLM",
    "QWenLMHeadModel", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "PhiForCausalLM", "Phi3ForCausalLM",
    "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration",
    "ApertusForCausalLM", "OlmoForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM", "OlmoeForCausalLM",
)


def supported_architectures() -> tuple[str, ...]:
    """The Hugging Face ``architectures`` names whose checkpoints :func:`mechinterp.load` converts."""
    return _SUPPORTED


def tl_config(
    stage: Path, config: dict[str, Any], *, device: str, fold_ln: bool, dtype: torch.dtype
) -> tuple[Any, str]:
    """The ``HookedTransformerConfig`` for the checkpoint staged in ``stage``.

    Args:
        stage: a folder whose ``config.json`` is the checkpoint's Hugging Face config.
        config: that config as a dict.
        device, fold_ln, dtype: as in TL's ``get_pretrained_model_config``.

    Returns:
        ``(cfg, name)``: the config, and the name to hand TL's state-dict converter.
    """
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    cfg = get_pretrained_model_config(str(stage), device=device, fold_ln=fold_ln, dtype=dtype, local_files_only=True)
    return cfg, str(stage)
