"""The zoo's on-disk format and registry: reading and writing zoo model folders.

It lives in ``core`` because loading is core's job (``mechinterp.load("zoo:<name>")``) and
tasks read the ground truth that zoo models ship; :mod:`mechinterp.zoo` holds the model
files, their training scripts and diagnostics, and re-exports these functions.

A zoo model is a folder inside the package, ``mechinterp/zoo/models/<name>/``::

    config.json          HookedTransformerConfig fields (JSON)
    model.safetensors    the TransformerLens state dict, as trained (unprocessed)
    tokenizer/           a Hugging Face tokenizer folder (``save_pretrained``), optional
    card.md              the model card: architecture, training, losses, mechanism
    *.json               anything else the model ships (e.g. ``circuit.json`` ground truth)

:func:`save_model` writes that folder; :func:`load_model` reads it back with no network
access. ``mechinterp.load("zoo:<name>")`` calls :func:`load_model`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mechinterp.core.rng import keep_global_rng
from mechinterp.errors import ModelLoadError

__all__ = ["ZOO_DIR", "names", "path", "card", "read_json", "save_model", "load_model"]

#: where shipped zoo models live (package data of :mod:`mechinterp.zoo`; a path, not an import).
ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo" / "models"

# HookedTransformerConfig fields that are derived or runtime-only: never saved.
_SKIP_FIELDS = {"device", "n_devices", "dtype", "tokenizer_prepends_bos", "n_params"}


def names() -> list[str]:
    """Names of the models shipped in the zoo, sorted.

    Example:
        >>> import mechinterp
        >>> "attn-only-2l" in mechinterp.zoo.names()  # doctest: +SKIP
        True
    """
    if not ZOO_DIR.exists():
        return []
    return sorted(
        p.name for p in ZOO_DIR.iterdir() if (p / "config.json").exists() and (p / "model.safetensors").exists()
    )


def path(name: str) -> Path:
    """The folder of zoo model ``name``; raises a :class:`ModelLoadError` listing valid names."""
    name = name.removeprefix("zoo:")
    folder = ZOO_DIR / name
    if not (folder / "config.json").exists():
        raise ModelLoadError(
            f"No zoo model named {name!r}. The zoo has: {names() or 'no models'}. "
            "Load one with mechinterp.load('zoo:<name>')."
        )
    return folder


def card(name: str) -> str:
    """The model card (markdown) of zoo model ``name``."""
    file = path(name) / "card.md"
    return file.read_text() if file.exists() else f"# {name}\n\n(no model card)\n"


def read_json(name: str, filename: str) -> Any:
    """Read an extra JSON file (for example ``circuit.json``) shipped with a zoo model."""
    file = path(name) / filename
    if not file.exists():
        raise ModelLoadError(f"Zoo model {name!r} ships no {filename!r}; it has {sorted(p.name for p in path(name).iterdir())}.")
    return json.loads(file.read_text())


def _config_to_dict(cfg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in vars(cfg).items():
        if key in _SKIP_FIELDS or key.startswith("_"):
            continue
        if isinstance(value, (str, int, float, bool, type(None))):
            out[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
            out[key] = list(value)
    return out


def save_model(
    model: Any,
    folder: str | Path,
    *,
    card: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (a HookedTransformer) in the zoo format to ``folder``.

    Args:
        model: the trained model. Its state dict is saved as it is (unprocessed);
            weight processing (LayerNorm folding, centring) happens at load time.
        folder: destination; created if missing. Use ``ZOO_DIR / name`` to ship it.
        card: the model card in markdown.
        extra: further JSON files to write, ``{"circuit.json": {...}}``.

    Returns:
        The folder written.
    """
    from safetensors.torch import save_file

    from mechinterp.core.atomic import atomic_path, write_text

    from mechinterp.core.validation import check_writable_dir

    folder = check_writable_dir(folder, "folder")
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "config.json", json.dumps(_config_to_dict(model.cfg), indent=2, sort_keys=True))
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # Buffers TL rebuilds itself (causal masks, rotary tables) are not weights.
    state = {k: v for k, v in state.items() if not k.endswith(("mask", "IGNORE", "rotary_sin", "rotary_cos"))}
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(folder / "tokenizer"))
    if card is not None:
        write_text(folder / "card.md", card)
    for filename, content in (extra or {}).items():
        write_text(folder / filename, json.dumps(content, indent=2))
    return folder


@keep_global_rng()  # TransformerLens seeds torch, NumPy and random globally when cfg.seed is set
def load_model(
    name_or_folder: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    fold_value_biases: bool = True,
    config_overrides: dict[str, Any] | None = None,
) -> Any:
    """Load a zoo model (by name, or from a folder in the zoo format) with no network access.

    Weight processing follows TransformerLens's ``from_pretrained`` defaults and can be
    switched off argument by argument; ``config_overrides`` sets ``HookedTransformerConfig``
    fields (e.g. ``use_attn_result``) before the model is built.
    """
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from safetensors import SafetensorError

    from mechinterp.core.loading import damaged, read_config
    from mechinterp.core.validation import check_device

    check_device(device, error=ModelLoadError)
    folder = Path(name_or_folder)
    if not (folder / "config.json").exists():
        folder = path(str(name_or_folder))
    cfg_dict = read_config(folder / "config.json")
    cfg_dict["device"] = str(device) if device is not None else "cpu"
    if dtype is not None:
        cfg_dict["dtype"] = dtype
    cfg_dict.update(config_overrides or {})
    try:
        cfg = HookedTransformerConfig(**cfg_dict)
    except (TypeError, ValueError, AssertionError) as err:
        raise ModelLoadError(
            f"{folder / 'config.json'} is not a valid zoo config ({type(err).__name__}: {err}); copy the folder again "
            "or save the model with mechinterp.zoo.save_model."
        ) from None
    tokenizer = None
    if (folder / "tokenizer").exists():
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
        except Exception as err:  # noqa: BLE001 - a garbled tokenizer file raises many kinds
            raise damaged(folder / "tokenizer", err) from None
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    weights = folder / "model.safetensors"
    if not weights.exists():
        raise ModelLoadError(f"{folder} has no model.safetensors: copy the whole folder again, or save the model "
                             "with mechinterp.zoo.save_model.")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise damaged(weights, err) from None
    if cfg.normalization_type is None:
        fold_ln = False
    try:
        model.load_and_process_state_dict(
            state,
            fold_ln=fold_ln,
            center_writing_weights=center_writing_weights and cfg.normalization_type is not None,
            center_unembed=center_unembed,
            fold_value_biases=fold_value_biases,
        )
    except (RuntimeError, KeyError) as err:
        raise ModelLoadError(
            f"The weights in {weights} do not fit the shapes in {folder / 'config.json'} ({str(err)[:300]}); the "
            "two files come from different models: copy the folder again or save it with mechinterp.zoo.save_model."
        ) from None
    model.to(cfg_dict["device"], print_details=False)
    if dtype is not None:
        model.to(dtype, print_details=False)
    model.eval()
    model.zoo_name = folder.name  # type: ignore[attr-defined]
    return model
