"""Which TransformerLens config a local checkpoint gets.

TransformerLens 3.9 builds a ``HookedTransformerConfig`` from a Hugging Face config by
its ``architectures[0]`` entry, except for families it configures only by their official
model name: Gemma 1/2/3 and OLMo 1/2 (a hard-coded entry per released size). A local
folder of those architectures fails there ("not currently supported"). :func:`tl_config`
gives every checkpoint the config TL would give it: for the name-configured families it
starts from the official entry of the family (TL's name-based branches read no config and
make no network call) and takes every shape and hyper-parameter from the checkpoint's own
config (sizes, heads, key/value heads, head_dim, eps, rope thetas and scaling, sliding
window and per-layer attention types, query_pre_attn_scalar, softcaps, n_ctx capped at
TL's 8192), so fine-tunes and custom-sized checkpoints convert too. At official sizes the
result equals TL's own config, except where TL's entry disagrees with Hugging Face's model
(Gemma 1's tanh GELU, Gemma 3 27B's attention scale).

For the families TL configures from the HF config, settings its branches miss under
transformers 5 are completed (``head_dim`` != hidden/heads, ``partial_rotary_factor``,
``layer_types`` sliding windows, linear rope) and settings TL would silently drop
(biases its converter ignores, rope types it lacks) raise a ``ModelLoadError``.
:func:`valid_processing` switches off the weight processing that would change a model's
outputs (folding for post-norm blocks, centring the unembedding under a logit softcap).

Example:
    >>> from mechinterp.core.architectures import supported_architectures
    >>> "Gemma2ForCausalLM" in supported_architectures()
    True
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import torch

from mechinterp.errors import ModelLoadError

__all__ = ["tl_config", "supported_architectures", "check_architecture", "valid_processing"]

# Architectures TL configures from the checkpoint's Hugging Face config (checked one by
# one against TL 3.9 + transformers 5: a tiny random checkpoint of each converts and its
# log-probs equal Hugging Face's; tests/core/test_architectures.py).
_FROM_CONFIG = (
    "GPT2LMHeadModel", "GPTNeoForCausalLM", "GPTNeoXForCausalLM", "GPTJForCausalLM", "OPTForCausalLM",
    "BloomForCausalLM", "LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "Qwen2ForCausalLM",
    "Qwen3ForCausalLM", "Phi3ForCausalLM", "ApertusForCausalLM", "OlmoeForCausalLM", "Olmo3ForCausalLM",
)
# Architectures TL configures only by official name (and Phi, whose TL branch reads a
# field transformers 5 moved): architecture -> builder of the TL config dict from the HF config.
_BUILDERS: dict[str, Callable[[Any], dict[str, Any]]] = {}
# Architectures TL 3.9 dispatches but converts wrongly or not at all through this path, and why.
_NOT_CONVERTED = {
    "QWenLMHeadModel": "needs trust_remote_code (the checkpoint's own Python code), which load() never runs",
    "GptOssForCausalLM": "TL 3.9's conversion does not reproduce Hugging Face's outputs (log-prob error 0.8)",
}


def supported_architectures() -> tuple[str, ...]:
    """The Hugging Face ``architectures`` names whose checkpoints :func:`mechinterp.load` converts.

    Example:
        >>> from mechinterp.core.architectures import supported_architectures
        >>> "LlamaForCausalLM" in supported_architectures()
        True
    """
    return tuple(sorted((*_FROM_CONFIG, *_BUILDERS)))


def check_architecture(config: dict[str, Any]) -> str:
    """The checkpoint's architecture name, if TL converts it; else a ``ModelLoadError`` naming those it does.

    Example:
        >>> check_architecture({"architectures": ["Gemma3ForCausalLM"]})
        'Gemma3ForCausalLM'
        >>> check_architecture({"model_type": "qwen2"})  # no architectures entry: the model_type's causal LM
        'Qwen2ForCausalLM'
    """
    arch = _architecture(config)
    if arch in supported_architectures():
        return arch
    why = f" ({_NOT_CONVERTED[arch]})" if arch in _NOT_CONVERTED else ""
    raise ModelLoadError(
        f"TransformerLens 3.9 cannot convert architecture {arch!r}{why}"
        f"{'' if arch else ' (config.json names no architectures and no known model_type)'}. "
        f"mechinterp.load converts Hugging Face checkpoints of: {', '.join(supported_architectures())}. "
        "Convert the model to one of these, or build a HookedTransformer yourself and pass it to the methods."
    )


def _architecture(config: dict[str, Any]) -> str | None:
    """``architectures[0]``, else the causal-LM class of ``model_type`` (as AutoModelForCausalLM picks)."""
    names = config.get("architectures") or []
    if names:
        return names[0]
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.get("model_type", ""))


def tl_config(
    stage: Path, config: dict[str, Any], *, device: str, fold_ln: bool, dtype: torch.dtype
) -> tuple[Any, str]:
    """The ``HookedTransformerConfig`` for the checkpoint staged in ``stage``, offline.

    Args:
        stage: a folder whose ``config.json`` is the checkpoint's Hugging Face config.
        config: that config as a dict.
        device, fold_ln, dtype: as in TL's ``get_pretrained_model_config``.

    Returns:
        ``(cfg, name)``: the config, and the name to hand TL's state-dict converter
        (``get_pretrained_state_dict(name, cfg, hf_model=...)``).

    Raises:
        ModelLoadError: an architecture TL cannot convert, or a checkpoint of a supported
            family using a feature TL cannot represent (named in the message).

    Example:
        >>> import json, tempfile, torch
        >>> from pathlib import Path
        >>> from transformers import Gemma2Config
        >>> stage = Path(tempfile.mkdtemp())
        >>> Gemma2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        ...              num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=32, vocab_size=48,
        ...              architectures=["Gemma2ForCausalLM"]).save_pretrained(stage)
        >>> cfg, _ = tl_config(stage, json.loads((stage / "config.json").read_text()), device="cpu",
        ...                    fold_ln=True, dtype=torch.float32)
        >>> cfg.d_head, cfg.n_key_value_heads, cfg.attn_types, cfg.output_logits_soft_cap
        (16, 2, ['local', 'global'], 30.0)
        >>> float(cfg.attn_scale) == 32 ** 0.5  # query_pre_attn_scalar, not head_dim
        True
    """
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config
    from transformers import AutoConfig

    arch = check_architecture(config)
    if not config.get("architectures"):  # TL reads architectures[0] from the staged config.json
        staged = json.loads((stage / "config.json").read_text())
        (stage / "config.json").write_text(json.dumps({**staged, "architectures": [arch]}))
    hf = AutoConfig.from_pretrained(str(stage), local_files_only=True)
    if arch in _BUILDERS:
        cfg_dict = _BUILDERS[arch](hf.get_text_config())
        cfg_dict["original_architecture"] = arch
        return _finish(cfg_dict, stage, device=device, fold_ln=fold_ln, dtype=dtype), str(stage)
    _check_from_config(hf, arch)
    cfg = get_pretrained_model_config(
        str(stage), device=device, fold_ln=fold_ln, dtype=dtype, local_files_only=True
    )
    return _complete(cfg, hf), str(stage)


# TL converters that write zero biases whatever the checkpoint holds.
_DROPS_BIASES = {
    "LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "Qwen3ForCausalLM", "Phi3ForCausalLM",
    "ApertusForCausalLM", "OlmoeForCausalLM", "Olmo3ForCausalLM",
}
# Rope types TL 3.9 reproduces for the architectures it configures from the HF config
# ("linear" is mapped onto TL's rotary_scaling_factor by _complete where no layer is local).
_ROPE_TYPES = {
    "LlamaForCausalLM": ("llama3", "linear"),
    "ApertusForCausalLM": ("llama3",),
    "Olmo3ForCausalLM": ("yarn",),
}


def _check_from_config(hf: Any, arch: str) -> None:
    """Refuse settings that TL's branch for ``arch`` would silently drop (outputs would differ from HF)."""
    if arch in _DROPS_BIASES and (getattr(hf, "attention_bias", False) or getattr(hf, "mlp_bias", False)):
        _refuse(hf, "attention or MLP biases (TL's converter for this architecture drops them)")
    params = getattr(hf, "rope_parameters", None) or {}
    if "full_attention" in params or "sliding_attention" in params:
        return  # rope per layer type: TL's Olmo3 branch reads it
    rope = _rope(hf)["type"]
    if rope != "default" and rope not in _ROPE_TYPES.get(arch, ()):
        _refuse(hf, f"rope scaling {rope!r}")


def _complete(cfg: Any, hf: Any) -> Any:
    """Fields TL's config branches read from places transformers 5 no longer uses, or ignore.

    ``head_dim`` when it differs from hidden_size / heads (TL's Llama branch assumes it does
    not), ``partial_rotary_factor`` (Phi-3 / Phi-4-mini), sliding-window layers given by
    ``layer_types`` (Qwen2/3 with ``use_sliding_window``), and linear rope scaling.
    """
    from transformer_lens import HookedTransformerConfig

    d = dict(cfg.to_dict())  # to_dict() is the config's own __dict__
    head_dim = getattr(hf, "head_dim", None)
    partial = (getattr(hf, "rope_parameters", None) or {}).get("partial_rotary_factor") or 1.0
    if cfg.positional_embedding_type == "rotary" and head_dim and head_dim != cfg.d_head:
        d.update(d_head=head_dim, attn_scale=-1.0)
    rotary = cfg.positional_embedding_type == "rotary"
    if rotary and partial != 1.0 and cfg.original_architecture != "PhiForCausalLM":
        d["rotary_dim"] = int(d["d_head"] * partial)
    elif rotary and head_dim and head_dim != cfg.d_head:
        d["rotary_dim"] = head_dim
    layer_types = getattr(hf, "layer_types", None)
    if layer_types is not None:
        _attention_layers(hf, d, list(layer_types))
    rope = _rope(hf)
    if rope["type"] == "linear" and not d.get("use_local_attn"):
        d["rotary_scaling_factor"] = float(rope["factor"])
    if d == cfg.__dict__:
        return cfg
    d.pop("n_params", None)
    return HookedTransformerConfig.from_dict(d)


def _finish(cfg_dict: dict[str, Any], stage: Path, *, device: str, fold_ln: bool, dtype: torch.dtype) -> Any:
    """What TL's ``get_pretrained_model_config`` does to a converted dict (no checkpoint, one device)."""
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

    cfg_dict.update(
        model_name=stage.name, tokenizer_name=str(stage), init_weights=False, device=device, dtype=dtype,
        n_devices=1, from_checkpoint=False, quantization_method=None,
    )
    cfg_dict.setdefault("default_prepend_bos", True)
    if fold_ln and cfg_dict["original_architecture"] not in POST_NORM_ARCHITECTURES:
        cfg_dict["normalization_type"] = {"LN": "LNPre", "RMS": "RMSPre"}.get(
            cfg_dict["normalization_type"], cfg_dict["normalization_type"]
        )
    return HookedTransformerConfig.from_dict(cfg_dict)


def _rope(hf: Any, layer_type: str | None = None) -> dict[str, Any]:
    params = getattr(hf, "rope_parameters", None) or {}
    if layer_type is not None and layer_type in params:
        params = params[layer_type] or {}
    theta = params.get("rope_theta", getattr(hf, "rope_theta", None))
    return {"theta": theta if theta is not None else 10000.0, "type": params.get("rope_type", "default"),
            "factor": params.get("factor", 1.0)}


def _refuse(hf: Any, what: str) -> None:
    raise ModelLoadError(
        f"This {hf.model_type} checkpoint uses {what}, which TransformerLens 3.9's HookedTransformer cannot "
        "represent; loading it would give a model whose outputs differ from the checkpoint's. "
        f"Supported {hf.model_type} checkpoints use the standard settings of the released models."
    )


def _shapes(hf: Any) -> dict[str, Any]:
    """The shape fields every family shares, from the checkpoint's config."""
    n_heads = hf.num_attention_heads
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // n_heads
    return {
        "d_model": hf.hidden_size,
        "d_head": head_dim,
        "n_heads": n_heads,
        "n_key_value_heads": getattr(hf, "num_key_value_heads", None) or n_heads,
        "d_mlp": hf.intermediate_size,
        "n_layers": hf.num_hidden_layers,
        "d_vocab": hf.vocab_size,
        "initializer_range": getattr(hf, "initializer_range", 0.02),
    }


def _n_ctx(hf: Any, cap: int) -> int:
    # TL caps the official entries (8192 for Gemma: "safe default"); load(n_ctx=...) raises it.
    return int(min(getattr(hf, "max_position_embeddings", None) or cap, cap))


def _attention_layers(hf: Any, cfg: dict[str, Any], layer_types: list[str] | None) -> None:
    """Sliding-window layers: TL keeps keys with ``k > q - window``, as HF's sliding mask does."""
    window = getattr(hf, "sliding_window", None)
    if layer_types is None or window is None or "sliding_attention" not in layer_types:
        cfg.update(use_local_attn=False, attn_types=None, window_size=None)
        return
    unknown = sorted(set(layer_types) - {"sliding_attention", "full_attention"})
    if unknown:
        _refuse(hf, f"attention layer types {unknown}")
    cfg.update(
        use_local_attn=True,
        window_size=int(window),
        attn_types=["local" if t == "sliding_attention" else "global" for t in layer_types],
    )


def _official(name: str) -> dict[str, Any]:
    """TL's entry for an official Gemma name: a name-based branch (reads no config, no network call)."""
    from transformer_lens.loading_from_pretrained import convert_hf_model_config

    return dict(convert_hf_model_config(name))


def _gemma_common(template: str, hf: Any, act: str) -> dict[str, Any]:
    if getattr(hf, "use_bidirectional_attention", False):
        _refuse(hf, "bidirectional attention (an embedding model, not a causal LM)")
    if getattr(hf, "attention_bias", False):
        _refuse(hf, "attention biases (Gemma's converter has none)")
    base = _official(template)
    cfg = {**base, **_shapes(hf)}
    cfg.update(
        n_ctx=_n_ctx(hf, base["n_ctx"]),
        eps=hf.rms_norm_eps,
        act_fn=act,
        rotary_dim=cfg["d_head"],
        use_attn_scale=True,
        # HF scales scores by query_pre_attn_scalar ** -0.5 (Gemma 1: head_dim ** -0.5);
        # TL divides them by attn_scale.
        attn_scale=math.sqrt(getattr(hf, "query_pre_attn_scalar", None) or cfg["d_head"]),
        attn_scores_soft_cap=float(getattr(hf, "attn_logit_softcapping", None) or -1.0),
        output_logits_soft_cap=float(getattr(hf, "final_logit_softcapping", None) or -1.0),
    )
    return cfg


def _gemma(hf: Any) -> dict[str, Any]:
    # GemmaConfig maps the legacy hidden_act "gelu" to the tanh GELU, which its MLP then uses.
    cfg = _gemma_common("google/gemma-2b", hf, hf.hidden_act)
    rope = _rope(hf)
    if rope["type"] != "default":
        _refuse(hf, f"rope scaling {rope['type']!r}")
    cfg["rotary_base"] = rope["theta"]
    _attention_layers(hf, cfg, None)
    return cfg


def _gemma2(hf: Any) -> dict[str, Any]:
    cfg = _gemma_common("google/gemma-2-2b", hf, hf.hidden_activation)
    rope = _rope(hf)
    if rope["type"] != "default":
        _refuse(hf, f"rope scaling {rope['type']!r}")
    cfg["rotary_base"] = rope["theta"]
    _attention_layers(hf, cfg, list(hf.layer_types))
    return cfg


def _gemma3(hf: Any) -> dict[str, Any]:
    cfg = _gemma_common("google/gemma-3-1b-pt", hf, hf.hidden_activation)
    full, local = _rope(hf, "full_attention"), _rope(hf, "sliding_attention")
    if full["type"] not in ("default", "linear") or local["type"] != "default":
        _refuse(hf, f"rope scaling {full['type']!r} (global layers) / {local['type']!r} (local layers)")
    cfg.update(
        attn_scores_soft_cap=-1.0,  # Gemma3Attention never passes attn_logit_softcapping on: HF ignores it
        rotary_base=full["theta"],
        rotary_base_local=local["theta"] if local["theta"] != full["theta"] else None,
        # TL multiplies the wavelengths of global layers by this factor: HF's "linear" rope.
        rotary_scaling_factor=float(full["factor"]) if full["type"] == "linear" else 1.0,
    )
    _attention_layers(hf, cfg, list(hf.layer_types))
    return cfg


def _gemma3_multimodal(hf: Any) -> dict[str, Any]:
    # Gemma3ForConditionalGeneration applies no final_logit_softcapping (only Gemma3ForCausalLM does).
    return {**_gemma3(hf), "output_logits_soft_cap": -1.0}


def _olmo_common(hf: Any) -> dict[str, Any]:
    """The fields TL's literal per-size OLMo entries share (its OLMo branches fetch the hub config)."""
    if (getattr(hf, "num_key_value_heads", None) or hf.num_attention_heads) != hf.num_attention_heads:
        _refuse(hf, "grouped-query attention (TL's OLMo converters take one key/value head per query head)")
    if getattr(hf, "attention_bias", False):
        _refuse(hf, "attention biases (TL's OLMo converters have none)")
    rope = _rope(hf)
    if rope["type"] != "default":
        _refuse(hf, f"rope scaling {rope['type']!r}")
    cfg = _shapes(hf)
    cfg.pop("n_key_value_heads")
    cfg.update(
        n_ctx=int(hf.max_position_embeddings),
        act_fn=hf.hidden_act,
        positional_embedding_type="rotary",
        rotary_base=rope["theta"],
        rotary_dim=cfg["d_head"],
        gated_mlp=True,
        attn_types=["global"] * hf.num_hidden_layers,
    )
    return cfg


def _olmo(hf: Any) -> dict[str, Any]:
    # OLMo 1's LayerNorm has no weights and a fixed eps of 1e-5; TL's converter fills in ones and zeros.
    clip = getattr(hf, "clip_qkv", None)
    return {**_olmo_common(hf), "normalization_type": "LN", "eps": 1e-5, "clip_qkv": clip}


def _olmo2(hf: Any) -> dict[str, Any]:
    return {**_olmo_common(hf), "normalization_type": "RMS", "eps": hf.rms_norm_eps}


def _phi(hf: Any) -> dict[str, Any]:
    """TL's Phi branch, reading ``partial_rotary_factor`` where transformers 5 keeps it."""
    partial = (getattr(hf, "rope_parameters", None) or {}).get("partial_rotary_factor")
    partial = getattr(hf, "partial_rotary_factor", partial) or 1.0
    d_head = hf.hidden_size // hf.num_attention_heads
    if (getattr(hf, "num_key_value_heads", None) or hf.num_attention_heads) != hf.num_attention_heads:
        _refuse(hf, "grouped-query attention (TL's Phi converter takes one key/value head per query head)")
    if getattr(hf, "qk_layernorm", False):
        _refuse(hf, "query/key LayerNorm")
    return {
        "d_model": hf.hidden_size, "d_head": d_head, "n_heads": hf.num_attention_heads,
        "d_mlp": hf.intermediate_size, "n_layers": hf.num_hidden_layers, "n_ctx": hf.max_position_embeddings,
        "eps": hf.layer_norm_eps,
        "d_vocab": hf.vocab_size, "act_fn": hf.hidden_act, "initializer_range": hf.initializer_range,
        "normalization_type": "LN", "positional_embedding_type": "rotary", "rotary_base": _rope(hf)["theta"],
        "use_attn_scale": True, "parallel_attn_mlp": True, "default_prepend_bos": False,
        "rotary_dim": round(partial * d_head),
    }


def valid_processing(cfg: Any, processing: dict[str, bool]) -> dict[str, bool]:
    """The weight processing that keeps ``cfg``'s model equal to the checkpoint (as TL's ``from_pretrained``).

    Folding and centring assume the norm sits on a sublayer's *input*: off for post-norm
    blocks (OLMo 2/3). Centring the unembedding adds a constant to every logit, which a
    logit softcap (Gemma 2) does not ignore: off there.

    Example:
        >>> import mechinterp
        >>> model = mechinterp.load("zoo:attn-only-2l")
        >>> valid_processing(model.cfg, {"fold_ln": True, "center_writing_weights": True,
        ...                              "center_unembed": True, "fold_value_biases": True})["center_unembed"]
        True
    """
    from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

    out = dict(processing)
    if cfg.normalization_type is None or cfg.original_architecture in POST_NORM_ARCHITECTURES:
        out["fold_ln"] = out["center_writing_weights"] = False
    if cfg.output_logits_soft_cap > 0:
        out["center_unembed"] = False
    return out


_BUILDERS.update({
    "GemmaForCausalLM": _gemma,
    "Gemma2ForCausalLM": _gemma2,
    "Gemma3ForCausalLM": _gemma3,
    "Gemma3ForConditionalGeneration": _gemma3_multimodal,
    "OlmoForCausalLM": _olmo,
    "Olmo2ForCausalLM": _olmo2,
    "PhiForCausalLM": _phi,
})
