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

from mechinterp.errors import ModelLoadError, OfflineError

__all__ = ["load", "load_local_checkpoint", "hub_reachable"]

_WEIGHT_PROCESSING = ("fold_ln", "center_writing_weights", "center_unembed", "fold_value_biases")


def load(
    name_or_path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    fold_value_biases: bool = True,
    **from_pretrained_kwargs: Any,
) -> Any:
    """Load a ``HookedTransformer`` from the zoo, a local checkpoint folder or a TL name.

    Args:
        name_or_path: ``"zoo:<name>"``, a folder with a Hugging Face checkpoint, or a
            TransformerLens model name such as ``"gpt2"``.
        device: ``"cpu"``, ``"cuda"``...; default CPU.
        dtype: ``torch.float32`` (default), ``torch.bfloat16``, or its name as a string.
        fold_ln, center_writing_weights, center_unembed, fold_value_biases: TL's weight
            processing, on by default as in ``from_pretrained``; switch off to analyse the
            raw weights.
        **from_pretrained_kwargs: passed to ``from_pretrained`` for hub names.

    Returns:
        The model in eval mode.

    Raises:
        ModelLoadError: unknown zoo name, a folder that is not a checkpoint, an
            architecture TransformerLens cannot convert.
        OfflineError: a hub name on a machine that cannot reach the hub.

    Example:
        >>> import mechinterp
        >>> model = mechinterp.load("zoo:attn-only-2l")
        >>> model.cfg.n_layers
        2
    """
    dtype = _resolve_dtype(dtype)
    processing = dict(
        fold_ln=fold_ln,
        center_writing_weights=center_writing_weights,
        center_unembed=center_unembed,
        fold_value_biases=fold_value_biases,
    )
    name = str(name_or_path)
    if name.startswith("zoo:"):
        from mechinterp.zoo import load_model

        return load_model(name, device=device, dtype=dtype, **processing)
    local = Path(name).expanduser()
    if local.exists():
        if (local / "model.safetensors").exists() and (local / "config.json").exists() and _is_zoo_format(local):
            from mechinterp.zoo import load_model

            return load_model(local, device=device, dtype=dtype, **processing)
        return load_local_checkpoint(local, device=device, dtype=dtype, **processing)
    return _load_from_hub(name, device=device, dtype=dtype, processing=processing, **from_pretrained_kwargs)


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype):
        raise ModelLoadError(f"Unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16' or 'float16'.")
    return resolved


def _is_zoo_format(folder: Path) -> bool:
    config = json.loads((folder / "config.json").read_text())
    return "d_model" in config and "architectures" not in config


def _staging_folder(folder: Path, tmp: Path) -> Path:
    """A neutral-named folder of links to ``folder``'s files, with a repaired config.

    TransformerLens picks some architectures from substrings of the *path* ("llama",
    "gemma"), and reads GPT-2's ``n_ctx``, which newer ``transformers`` configs no longer
    carry. Linking the files into a neutral folder and completing the config avoids both.
    """
    stage = tmp / "checkpoint"
    stage.mkdir()
    for item in folder.iterdir():
        if item.name != "config.json":
            (stage / item.name).symlink_to(item.resolve())
    config = json.loads((folder / "config.json").read_text())
    if "n_positions" in config and "n_ctx" not in config:
        config["n_ctx"] = config["n_positions"]
    (stage / "config.json").write_text(json.dumps(config))
    return stage


def load_local_checkpoint(
    folder: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    fold_value_biases: bool = True,
) -> Any:
    """Load a Hugging Face checkpoint folder into a ``HookedTransformer``, fully offline.

    Args:
        folder: holds ``config.json``, ``*.safetensors`` or ``pytorch_model.bin``, and
            tokenizer files (optional: without them the model takes token tensors only).
        device, dtype, fold_ln, center_writing_weights, center_unembed, fold_value_biases:
            as in :func:`load`.

    Returns:
        The converted model, whose log-probabilities match the Hugging Face model's.
    """
    from transformer_lens import HookedTransformer
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config, get_pretrained_state_dict
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder).expanduser().resolve()
    if not (folder / "config.json").exists():
        raise ModelLoadError(
            f"{folder} has no config.json, so it is not a Hugging Face checkpoint. Save one with "
            "model.save_pretrained(folder) and tokenizer.save_pretrained(folder), or load a zoo "
            "model with mechinterp.load('zoo:<name>')."
        )
    torch_dtype = dtype or torch.float32
    with tempfile.TemporaryDirectory(prefix="mechinterp-") as tmp:
        stage = str(_staging_folder(folder, Path(tmp)))
        try:
            cfg = get_pretrained_model_config(
                stage, device=str(device or "cpu"), fold_ln=fold_ln, dtype=torch_dtype, local_files_only=True
            )
            hf_model = AutoModelForCausalLM.from_pretrained(stage, dtype=torch_dtype, local_files_only=True)
            state = get_pretrained_state_dict(stage, cfg, hf_model=hf_model, dtype=torch_dtype)
        except (ValueError, KeyError, AttributeError, NotImplementedError, OSError) as err:
            architectures = json.loads((folder / "config.json").read_text()).get("architectures")
            raise ModelLoadError(
                f"TransformerLens could not convert the checkpoint in {folder} "
                f"(architectures={architectures}): {type(err).__name__}: {err}. Supported families "
                "include GPT-2, GPT-NeoX/Pythia, GPT-J, Llama, Mistral, Qwen2/3, Gemma, OPT, Phi."
            ) from err
        del hf_model
        tokenizer = None
        if any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")):
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    cfg.model_name = folder.name
    cfg.tokenizer_name = str(folder) if tokenizer is not None else None
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    model.load_and_process_state_dict(
        state,
        fold_ln=fold_ln and cfg.normalization_type is not None,
        center_writing_weights=center_writing_weights and cfg.normalization_type is not None,
        center_unembed=center_unembed,
        fold_value_biases=fold_value_biases,
    )
    if model.tokenizer is not None and "gemma" not in str(cfg.original_architecture).lower():
        # TL special-cases tokenizers whose *path* contains "gemma"; a folder name must not trigger it.
        model.tokenizer.name_or_path = folder.name.lower().replace("gemma", "g-mma")
    model.to(str(device or "cpu"), print_details=False)
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
    return model


def _in_hf_cache(official_name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(official_name, "config.json")
        return isinstance(hit, str)
    except Exception:  # noqa: BLE001 - any failure means "not cached"
        return False


def _zoo_names() -> list[str]:
    from mechinterp.zoo import names

    return names()
