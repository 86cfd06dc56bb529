"""``load``: one entry point for zoo models, local Hugging Face checkpoints and TL names.

TransformerLens's ``from_pretrained`` only accepts names from its official list and
fetches configs from the hub even when weights are handed to it, so it cannot load a
checkpoint folder on a machine without internet. :func:`load` can:

* ``"zoo:<name>"`` — a model shipped inside this package (see :mod:`mechinterp.zoo`);
* a local folder with a Hugging Face checkpoint (``config.json``, weights, tokenizer
  files) — converted with TransformerLens's own config and weight converters, with
  ``local_files_only`` everywhere, so it makes no network call. GPT-2, GPT-NeoX/Pythia,
  Llama, Qwen2 (grouped-query attention) and the other families TL converts work;
* any other name — ``HookedTransformer.from_pretrained`` (needs the hub, or the model in
  the local Hugging Face cache). Offline and not cached, it fails within seconds with a
  message saying how to load a local checkpoint instead.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch

from mechinterp.core.devices import check_n_devices, split_over_devices
from mechinterp.core.zoo_format import load_model, names as zoo_names, path as zoo_path
from mechinterp.core.rng import keep_global_rng
from mechinterp.core.validation import check_device
from mechinterp.errors import ModelLoadError, OfflineError

__all__ = ["load", "load_gguf", "load_local_checkpoint", "model_info", "tokenizer_prepends_bos", "hub_reachable"]

_WEIGHT_PROCESSING = ("fold_ln", "center_writing_weights", "center_unembed", "fold_value_biases")


@keep_global_rng()  # TransformerLens seeds torch, NumPy and random globally when cfg.seed is set
def load(
    name_or_path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    fold_value_biases: bool = True,
    n_devices: int | None = None,
    device_map: str | None = None,
    **config_overrides: Any,
) -> Any:
    """Load a ``HookedTransformer`` from the zoo, a GGUF file, a local checkpoint folder or a TL name.

    Args:
        name_or_path: ``"zoo:<name>"``; a ``.gguf`` file (llama.cpp / ollama; needs the
            ``gguf`` extra); a folder with a Hugging Face checkpoint; or a TransformerLens
            model name such as ``"gpt2"`` (needs the hub or the local HF cache).
        device: ``"cpu"``, ``"cuda"``...; default CPU.
        dtype: ``torch.float32`` (default), ``torch.bfloat16``, ``torch.float16``, or its
            name as a string (``"bf16"`` and ``"fp16"`` are accepted too).
        fold_ln, center_writing_weights, center_unembed, fold_value_biases: TL's weight
            processing, on by default as in ``from_pretrained``; switch off to analyse the
            raw weights.
        n_devices: split the layers over this many GPUs of this host, from ``device`` (default
            ``cuda:0``) on, for a model too large for one card: the weights are loaded on the CPU,
            then each block goes to its GPU (:func:`mechinterp.core.devices.split_over_devices`;
            fast paths step aside, see :data:`mechinterp.core.devices.MULTI_DEVICE_SUPPORT`).
        device_map: ``"auto"``: ``n_devices`` = every visible GPU (the only map accepted).
        **config_overrides: ``HookedTransformerConfig`` fields set before the model is
            built, e.g. ``ungroup_grouped_query_attention=True``, ``use_attn_result=True``,
            ``default_prepend_bos=True``, ``n_ctx=512``. Hub names also accept the other
            keywords of ``HookedTransformer.from_pretrained``. Any other keyword raises.

    Returns:
        The model in eval mode. ``model.mechinterp_meta`` (see :func:`model_info`) says
        where it came from, its dtype, whether prompts get a BOS token and, for GGUF
        files, which quantization the weights were dequantized from.

    Raises:
        ModelLoadError: unknown zoo name, a folder that is not a checkpoint, an
            architecture TransformerLens cannot convert, an unknown keyword.
        OfflineError: a hub name on a machine that cannot reach the hub.

    Example:
        >>> import mechinterp
        >>> model = mechinterp.load("zoo:attn-only-2l")
        >>> model.cfg.n_layers
        2
        >>> mechinterp.core.loading.model_info(model)["source"]
        'zoo'
    """
    dtype = _resolve_dtype(dtype)
    check_device(device, error=ModelLoadError)
    if device_map is not None or n_devices is not None:
        n = _devices_from_map(device_map, n_devices, device)
        if n > 1:
            model = load(name_or_path, device="cpu", dtype=dtype, fold_ln=fold_ln, center_writing_weights=center_writing_weights,
                         center_unembed=center_unembed, fold_value_biases=fold_value_biases, **config_overrides)
            split_over_devices(model, n, device or "cuda")
            model.mechinterp_meta["n_devices"] = n
            return model
    processing = dict(
        fold_ln=fold_ln,
        center_writing_weights=center_writing_weights,
        center_unembed=center_unembed,
        fold_value_biases=fold_value_biases,
    )
    name = str(name_or_path)
    if name.startswith("zoo:"):
        _check_overrides(config_overrides)
        model = load_model(name, device=device, dtype=dtype, config_overrides=config_overrides, **processing)
        return _with_meta(model, source="zoo", path=name, dtype=dtype, **_zoo_meta(name))
    local = Path(name).expanduser()
    if local.is_file():
        if local.suffix.lower() != ".gguf":
            raise ModelLoadError(
                f"{local} is a file but not a .gguf file. mechinterp.load takes a .gguf file, a folder "
                "with a Hugging Face checkpoint (config.json + weights), 'zoo:<name>' or a TL model name"
                + (f": pass the folder that holds it, mechinterp.load({str(local.parent)!r})." if local.parent.is_dir()
                   and (local.name == "config.json" or local.suffix in (".safetensors", ".bin")) else ".")
            )
        return load_gguf(local, device=device, dtype=dtype, **processing, **config_overrides)
    if local.exists():
        if (local / "config.json").exists() and _is_zoo_format(local):
            if not (local / "model.safetensors").exists():
                raise ModelLoadError(
                    f"{local} is a zoo-format folder (its config.json holds HookedTransformerConfig fields) but has no "
                    "model.safetensors: copy the whole folder again, or save the model with mechinterp.zoo.save_model."
                )
            _check_overrides(config_overrides)
            model = load_model(local, device=device, dtype=dtype, config_overrides=config_overrides, **processing)
            return _with_meta(model, source="zoo", path=str(local), dtype=dtype, **_zoo_meta(local))
        return load_local_checkpoint(local, device=device, dtype=dtype, **processing, **config_overrides)
    return _load_from_hub(name, device=device, dtype=dtype, processing=processing, **config_overrides)


def _devices_from_map(device_map: str | None, n_devices: int | None, device: Any) -> int:
    """The GPU count a ``device_map`` / ``n_devices`` pair asks for (checked against the host's GPUs)."""
    if device_map is None:
        return check_n_devices(n_devices, device)
    if device_map != "auto":
        raise ModelLoadError(f"device_map={device_map!r} is not supported: pass device_map='auto' (every visible GPU) or "
                             "n_devices=N (the first N GPUs from device=).")
    if n_devices is not None:
        raise ModelLoadError("Pass device_map='auto' or n_devices=N, not both.")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ModelLoadError("device_map='auto' splits the layers over the GPUs, but this host has none: leave it unset.")
    return check_n_devices(count, device)


_DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None:
        return None
    if not isinstance(dtype, torch.dtype):
        text = str(dtype).removeprefix("torch.")
        dtype = getattr(torch, _DTYPE_ALIASES.get(text, text), None)
    if dtype not in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        raise ModelLoadError(
            f"Unknown or unsupported dtype {dtype!r}; use 'float32', 'bfloat16' or 'float16' (or the torch dtype)."
        )
    return dtype


def _check_overrides(overrides: dict[str, Any]) -> None:
    """Every keyword must be a ``HookedTransformerConfig`` field: none is silently ignored."""
    import dataclasses

    from transformer_lens import HookedTransformerConfig

    fields = {f.name for f in dataclasses.fields(HookedTransformerConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ModelLoadError(
            f"mechinterp.load got unknown keyword(s) {unknown}. For local checkpoints, GGUF files and zoo "
            "models it takes device, dtype, the weight-processing switches (fold_ln, center_writing_weights, "
            "center_unembed, fold_value_biases) and HookedTransformerConfig fields such as "
            "ungroup_grouped_query_attention, use_attn_result, default_prepend_bos or n_ctx."
        )
    derived = sorted(set(overrides) & {"d_model", "n_layers", "n_heads", "d_head", "d_mlp", "d_vocab", "n_key_value_heads"})
    if derived:
        raise ModelLoadError(f"{derived} are fixed by the checkpoint's weights and cannot be overridden in load().")


def _with_meta(model: Any, **meta: Any) -> Any:
    """Attach ``model.mechinterp_meta``: where the model came from and how it tokenises."""
    tok = model.tokenizer
    info = {
        "source": meta.pop("source"),
        "path": meta.pop("path"),
        "architecture": getattr(model.cfg, "original_architecture", None),
        "dtype": str(model.cfg.dtype).removeprefix("torch."),
        "prepend_bos": bool(model.cfg.default_prepend_bos),
        "bos_token": getattr(tok, "bos_token", None) if tok is not None else None,
        "n_key_value_heads": getattr(model.cfg, "n_key_value_heads", None) or model.cfg.n_heads,
        "dequantized_from": None,
        "weight_processing": getattr(model, "mechinterp_processing", None),
    }
    meta.pop("dtype", None)
    info.update(meta)
    model.mechinterp_meta = info
    return model


def model_info(model: Any) -> dict[str, Any]:
    """Where ``model`` came from and how it tokenises (``model.mechinterp_meta``).

    Keys: ``source`` (``"zoo"``, ``"hf-folder"``, ``"gguf"``, ``"hub"`` or ``"unknown"`` for a
    model built elsewhere), ``path``, ``architecture``, ``dtype``, ``prepend_bos`` (whether
    prompts get a BOS token, following the checkpoint's own tokenizer configuration),
    ``bos_token``, ``bos_source`` (what decided ``prepend_bos``), ``n_key_value_heads``,
    ``dequantized_from`` (the GGUF quantization type, e.g. ``"Q4_1"``, else ``None``),
    ``absence_token`` (zoo models trained to read a token as a missing word declare it: the
    attribution methods' default ``"auto"`` baseline uses it), ``weight_processing`` (for converted checkpoints: each of TL's processing switches as
    asked and as applied; folding is switched off where it would change the model, e.g.
    post-norm blocks or a logit softcap).
    """
    meta = getattr(model, "mechinterp_meta", None)
    if meta is None:
        meta = _with_meta(model, source="unknown", path=None).mechinterp_meta
        meta["bos_source"] = "the model's config (built outside mechinterp.load)"
    return dict(meta)


def _zoo_meta(name_or_folder: str | Path) -> dict[str, Any]:
    """What a zoo model declares about itself beyond its config: ``attribution.json``'s
    ``absence_token`` (the token the model was trained to read as a missing word), which the
    attribution methods' ``"auto"`` baseline uses."""
    folder = Path(name_or_folder) if Path(name_or_folder).is_dir() else zoo_path(str(name_or_folder))
    extra = folder / "attribution.json"
    if not extra.exists():
        return {}
    declared = read_config(extra)
    return {"absence_token": declared.get("absence_token"), "absence_token_why": declared.get("why")}


def read_config(file: Path) -> dict[str, Any]:
    """A checkpoint's JSON file as a dict; a truncated or garbled file raises a :class:`ModelLoadError` naming it."""
    try:
        config = json.loads(Path(file).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise damaged(file, err) from None
    if not isinstance(config, dict):
        raise damaged(file, ValueError(f"a JSON {type(config).__name__}, not an object"))
    return config


def damaged(file: Path | str, err: BaseException) -> ModelLoadError:
    """The error for a checkpoint file that exists but cannot be read (truncated download, garbled copy)."""
    return ModelLoadError(
        f"{file} could not be read ({type(err).__name__}: {str(err)[:200]}); the file is damaged or incomplete "
        "(an interrupted download or copy?). Copy or download the checkpoint folder again."
    )


def _is_zoo_format(folder: Path) -> bool:
    config = read_config(folder / "config.json")
    return "d_model" in config and "architectures" not in config


def _staging_folder(folder: Path | None, tmp: Path, config: dict[str, Any] | None = None) -> Path:
    """A neutral-named folder of links to ``folder``'s files, with a repaired config.

    TransformerLens picks some architectures from substrings of the *path* ("llama",
    "gemma"), and reads GPT-2's ``n_ctx``, which newer ``transformers`` configs no longer
    carry. Linking the files into a neutral folder and completing the config avoids both.
    ``folder=None`` stages only ``config`` (a GGUF file's, already dequantized).
    """
    stage = tmp / "checkpoint"
    stage.mkdir()
    if folder is not None:
        for item in folder.iterdir():
            if item.name != "config.json":
                (stage / item.name).symlink_to(item.resolve())
        config = json.loads((folder / "config.json").read_text())
    assert config is not None
    if "n_positions" in config and "n_ctx" not in config:
        config["n_ctx"] = config["n_positions"]
    (stage / "config.json").write_text(json.dumps(config))
    return stage


def tokenizer_prepends_bos(tokenizer: Any) -> bool:
    """Whether the Hugging Face ``tokenizer`` itself puts its BOS token in front of a text.

    This is what the checkpoint's authors configured (``add_bos_token``, the
    post-processor's template), read off by tokenising a short text. TransformerLens
    instead prepends BOS whenever the tokenizer has one; :func:`load` follows the
    tokenizer.
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("hello")["input_ids"]
    return bool(len(ids) > 0 and ids[0] == bos)


@keep_global_rng()  # TransformerLens seeds torch, NumPy and random globally when cfg.seed is set
def load_local_checkpoint(
    folder: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    fold_value_biases: bool = True,
    **config_overrides: Any,
) -> Any:
    """Load a Hugging Face checkpoint folder into a ``HookedTransformer``, fully offline.

    Args:
        folder: holds ``config.json``, ``*.safetensors`` or ``pytorch_model.bin``, and
            tokenizer files (optional: without them the model takes token tensors only).
        device, dtype, fold_ln, center_writing_weights, center_unembed, fold_value_biases,
            config_overrides: as in :func:`load`.

    Returns:
        The converted model, whose log-probabilities match the Hugging Face model's.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mechinterp.core.architectures import check_architecture

    _check_overrides(config_overrides)
    check_device(device, error=ModelLoadError)
    folder = Path(folder).expanduser().resolve()
    if folder.is_file():
        raise ModelLoadError(
            f"{folder} is a file; pass the folder that holds the checkpoint ({folder.parent}), or a .gguf file "
            "to mechinterp.load."
        )
    if not folder.exists():
        raise ModelLoadError(f"{folder} does not exist; check the path.")
    if not (folder / "config.json").exists():
        raise ModelLoadError(
            f"{folder} has no config.json, so it is not a Hugging Face checkpoint. Save one with "
            "model.save_pretrained(folder) and tokenizer.save_pretrained(folder), load a .gguf file, "
            "or load a zoo model with mechinterp.load('zoo:<name>')."
        )
    torch_dtype = dtype or torch.float32
    config = read_config(folder / "config.json")
    if "d_model" in config and "architectures" not in config:
        raise ModelLoadError(
            f"{folder} is a zoo-format folder (HookedTransformerConfig fields in config.json), not a Hugging Face "
            "checkpoint: load it with mechinterp.load(folder)."
        )
    check_architecture(config)  # before reading the weights: an unsupported architecture fails at once
    with tempfile.TemporaryDirectory(prefix="mechinterp-") as tmp:
        stage = _staging_folder(folder, Path(tmp))
        try:
            hf_model = AutoModelForCausalLM.from_pretrained(str(stage), dtype=torch.float32, local_files_only=True)
        except SafetensorError as err:
            raise damaged(folder, err) from err
        except (ValueError, KeyError, OSError) as err:
            raise _unsupported(folder, config, err) from err
        tokenizer = None
        if any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")):
            try:
                tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            except Exception as err:  # noqa: BLE001 - a garbled tokenizer file raises many kinds
                raise damaged(f"The tokenizer files in {folder}", err) from err
        model = _convert(
            hf_model, tokenizer, stage, config, folder.name, device=device, dtype=torch_dtype,
            processing=dict(fold_ln=fold_ln, center_writing_weights=center_writing_weights,
                            center_unembed=center_unembed, fold_value_biases=fold_value_biases),
            overrides=config_overrides,
        )
    return _with_meta(model, source="hf-folder", path=str(folder), **_bos_meta(model, tokenizer, config_overrides))


@keep_global_rng()  # TransformerLens seeds torch, NumPy and random globally when cfg.seed is set
def load_gguf(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    fold_value_biases: bool = True,
    **config_overrides: Any,
) -> Any:
    """Load a ``.gguf`` file (llama.cpp / ollama) into a ``HookedTransformer``, offline.

    The weights are dequantized by ``transformers`` + ``gguf`` (to fp32, then cast to
    ``dtype``) and converted exactly as a Hugging Face folder would be, so the model's
    log-probabilities equal those of ``AutoModelForCausalLM.from_pretrained(...,
    gguf_file=...)``. ``model.mechinterp_meta["dequantized_from"]`` names the file's
    quantization type: analyses describe the quantized model, not the original weights.

    Example:
        >>> model = mechinterp.load("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
        >>> model.mechinterp_meta["dequantized_from"]  # doctest: +SKIP
        'Q4_1'
    """
    from mechinterp.core.gguf import read_gguf

    _check_overrides(config_overrides)
    check_device(device, error=ModelLoadError)
    torch_dtype = dtype or torch.float32
    hf_model, tokenizer, info = read_gguf(path, dtype=torch.float32)
    config = hf_model.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = config.get("architectures") or [type(hf_model).__name__]
    with tempfile.TemporaryDirectory(prefix="mechinterp-") as tmp:
        stage = _staging_folder(None, Path(tmp), config)
        model = _convert(
            hf_model, tokenizer, stage, config, Path(path).stem, device=device, dtype=torch_dtype,
            processing=dict(fold_ln=fold_ln, center_writing_weights=center_writing_weights,
                            center_unembed=center_unembed, fold_value_biases=fold_value_biases),
            overrides=config_overrides,
        )
    return _with_meta(
        model, source="gguf", path=str(Path(path).expanduser().resolve()), dequantized_from=info.quantization,
        gguf_architecture=info.architecture, **_bos_meta(model, tokenizer, config_overrides),
    )


def _bos_meta(model: Any, tokenizer: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    if "default_prepend_bos" in overrides:
        return {"bos_source": "default_prepend_bos passed to load()"}
    if tokenizer is None:
        return {"bos_source": "no tokenizer: token tensors are used as given"}
    return {"bos_source": "the checkpoint's tokenizer configuration (as Hugging Face tokenises)"}


def _unsupported(folder: Path | str, config: dict[str, Any], err: Exception) -> ModelLoadError:
    from mechinterp.core.architectures import supported_architectures

    return ModelLoadError(
        f"TransformerLens could not convert the checkpoint in {folder} "
        f"(architectures={config.get('architectures')}): {type(err).__name__}: {err}. "
        f"TransformerLens 3.9 converts: {', '.join(supported_architectures())}."
    )


def _convert(
    hf_model: Any,
    tokenizer: Any,
    stage: Path,
    config: dict[str, Any],
    name: str,
    *,
    device: str | torch.device | None,
    dtype: torch.dtype,
    processing: dict[str, bool],
    overrides: dict[str, Any],
) -> Any:
    """A loaded Hugging Face model to a ``HookedTransformer`` with TL's converters, offline."""
    from transformer_lens import HookedTransformer
    from transformer_lens.loading_from_pretrained import get_pretrained_state_dict

    from mechinterp.core.architectures import tl_config, valid_processing

    # Convert and process the weights in fp32 (folding and centring in bf16 loses
    # precision), then cast: a bf16 model is the fp32 model rounded once.
    if hf_model.dtype != torch.float32:
        hf_model = hf_model.float()
    try:
        cfg, config_name = tl_config(
            stage, config, device=str(device or "cpu"), fold_ln=processing["fold_ln"], dtype=torch.float32
        )
        state = get_pretrained_state_dict(config_name, cfg, hf_model=hf_model, dtype=torch.float32)
    except (ValueError, KeyError, AttributeError, NotImplementedError, OSError) as err:
        raise _unsupported(name, config, err) from err
    del hf_model
    cfg.model_name = name
    cfg.tokenizer_name = getattr(tokenizer, "name_or_path", None) if tokenizer is not None else None
    if tokenizer is not None:
        cfg.default_prepend_bos = tokenizer_prepends_bos(tokenizer)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    applied = valid_processing(cfg, processing)
    model.load_and_process_state_dict(state, **applied)
    model.mechinterp_processing = {  # read by _with_meta: what was asked and what was applied
        key: {"asked": processing[key], "applied": applied[key]} for key in processing
    }
    if model.tokenizer is not None and "gemma" not in str(cfg.original_architecture).lower():
        # TL special-cases tokenizers whose *path* contains "gemma"; a folder name must not trigger it.
        model.tokenizer.name_or_path = name.lower().replace("gemma", "g-mma")
    model.to(str(device or "cpu"), print_details=False)
    if dtype != torch.float32:
        model.to(dtype, print_details=False)
    model.eval()
    return model


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host:443`` opens within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_from_hub(
    name: str,
    *,
    device: str | torch.device | None,
    dtype: torch.dtype | None,
    processing: dict[str, bool],
    **kwargs: Any,
) -> Any:
    from transformer_lens import HookedTransformer
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        official = get_official_model_name(name)
    except ValueError as err:
        raise ModelLoadError(
            f"{name!r} is not a zoo model ('zoo:<name>', one of {_zoo_names()}), not an existing "
            "local folder, and not a model name TransformerLens knows. Check the spelling or the path."
        ) from err
    offline_hint = (
        f"Cannot reach the Hugging Face hub to download {official!r}. On a machine with internet run "
        f"`huggingface-cli download {official} --local-dir ./{official.split('/')[-1]}`, copy the folder "
        f"here and call mechinterp.load('./{official.split('/')[-1]}'); or use a zoo model "
        f"({', '.join('zoo:' + n for n in _zoo_names())})."
    )
    if not _in_hf_cache(official) and not hub_reachable():
        raise OfflineError(offline_hint)
    try:
        model = HookedTransformer.from_pretrained(
            name, device=str(device or "cpu"), dtype=dtype or torch.float32, **processing, **kwargs
        )
    except OSError as err:
        raise OfflineError(f"{offline_hint} ({err})") from err
    model.eval()
    return _with_meta(model, source="hub", path=official, bos_source="TransformerLens's default for this model")


def _in_hf_cache(official_name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(official_name, "config.json")
        return isinstance(hit, str)
    except Exception:  # noqa: BLE001 - any failure means "not cached"
        return False


def _zoo_names() -> list[str]:
    return zoo_names()
