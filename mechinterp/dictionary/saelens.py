"""Checkpoints in the SAELens 6 format: a folder with ``cfg.json`` and ``sae_weights.safetensors``.

The layout matches ``sae_lens.SAE.save_model`` / ``SAE.load_from_disk`` (read from SAELens
6.54's source): the weights file holds ``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``,
``W_dec [d_sae, d_in]``, ``b_dec [d_in]`` and, for JumpReLU, ``threshold [d_sae]``; the
config holds the ``SAEConfig`` fields (``d_in``, ``d_sae``, ``dtype``, ``device``,
``apply_b_dec_to_input``, ``normalize_activations``, ``reshape_activations``,
``architecture``; ``k`` and ``rescale_acts_by_decoder_norm`` for TopK; ``d_out`` for
transcoders) and a ``metadata`` dict (``sae_lens_version``, ``hook_name``, ``model_name``...).

Architectures: ``standard``, ``topk``, ``jumprelu`` (a BatchTopK SAE is saved as JumpReLU,
as SAELens does), ``transcoder`` and ``jumprelu_transcoder``. SAELens has no TopK
transcoder: ours are written with ``architecture: "topk_transcoder"``, which this module
reads and SAELens refuses. Per-head SAEs: all heads flattened is SAELens's
``reshape_activations: "hook_z"``; one head is ``metadata.hook_head_index``. Old (pre-6)
SAELens configs (``hook_point``, ``hook_point_head_index``, ``activation_fn_str``) are read too.

Example:
    >>> import tempfile
    >>> from mechinterp.dictionary import SparseAutoencoder, save_sae, load_sae
    >>> sae = SparseAutoencoder(8, 32, "topk", k=4, hook_name="blocks.0.hook_resid_post")
    >>> folder = save_sae(sae, tempfile.mkdtemp())
    >>> load_sae(folder).k
    4
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mechinterp.dictionary.sae import SparseAutoencoder
from mechinterp.errors import MechinterpError
from mechinterp.core.atomic import atomic_path, write_text
from mechinterp.core.validation import check_writable_dir

__all__ = ["save_sae", "load_sae", "SAE_CFG_FILENAME", "SAE_WEIGHTS_FILENAME"]

SAE_CFG_FILENAME = "cfg.json"
SAE_WEIGHTS_FILENAME = "sae_weights.safetensors"
SAELENS_VERSION = "6.54.12"  # the format version written (read from that release's source)
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
_IDENTITY_NORMALIZATION = ("none", "expected_average_only_in")  # the latter is folded before inference in SAELens


def _architecture(sae: SparseAutoencoder) -> str:
    if not sae.is_transcoder:
        return sae.architecture
    return {"standard": "transcoder", "jumprelu": "jumprelu_transcoder", "topk": "topk_transcoder"}[sae.architecture]


def save_sae(sae: SparseAutoencoder, folder: str | Path, *, extra_metadata: dict[str, Any] | None = None) -> Path:
    """Write ``sae`` as a SAELens checkpoint folder (created if needed); returns the folder."""
    from safetensors.torch import save_file

    check_writable_dir(folder, "folder")

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: p.detach().contiguous().cpu() for name, p in sae.named_parameters()}
    with atomic_path(folder / SAE_WEIGHTS_FILENAME) as tmp:
        save_file(state, str(tmp))
    log = getattr(sae, "training_log", None)
    metadata: dict[str, Any] = {
        "sae_lens_version": SAELENS_VERSION, "sae_lens_training_version": None, "model_name": sae.model_name,
        "hook_name": sae.hook_name, "hook_head_index": sae.hook_head_index, "prepend_bos": None, "context_size": None,
        "trained_with": "mechinterp.dictionary" if log is not None else None,
    }
    if sae.is_transcoder:
        metadata["hook_name_out"] = sae.hook_name_out
    if log is not None:
        metadata["mechinterp_train_config"] = log.config
    if sae.max_input_norm is not None:
        metadata["mechinterp_max_input_norm"] = float(sae.max_input_norm)
    metadata.update(extra_metadata or {})
    cfg: dict[str, Any] = {
        "d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": str(sae.W_enc.dtype).removeprefix("torch."), "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input, "normalize_activations": "none",
        "reshape_activations": sae.reshape_activations, "metadata": metadata, "architecture": _architecture(sae),
    }
    if sae.architecture == "topk":
        cfg.update(k=sae.k, rescale_acts_by_decoder_norm=False)
    if sae.is_transcoder:
        cfg["d_out"] = sae.d_out
    write_text(folder / SAE_CFG_FILENAME, json.dumps(cfg, indent=2))
    return folder


def load_sae(folder: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> SparseAutoencoder:
    """Read a SAELens checkpoint folder (``cfg.json`` + ``sae_weights.safetensors``) offline."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path, weights_path = folder / SAE_CFG_FILENAME, folder / SAE_WEIGHTS_FILENAME
    if not cfg_path.exists() or not weights_path.exists():
        raise MechinterpError(
            f"{folder} is not a SAELens checkpoint: it needs {SAE_CFG_FILENAME} and {SAE_WEIGHTS_FILENAME}. "
            "Download the SAE's folder (e.g. from its Hugging Face repository) and pass that folder."
        )
    cfg = _upgrade(json.loads(cfg_path.read_text()))
    arch = cfg.get("architecture", "standard")
    base = {"transcoder": "standard", "jumprelu_transcoder": "jumprelu", "topk_transcoder": "topk"}.get(arch, arch)
    if base not in ("standard", "topk", "jumprelu"):
        raise MechinterpError(
            f"SAE architecture {arch!r} is not supported here (supported: standard, topk, jumprelu, batchtopk saved as "
            "jumprelu, transcoder, jumprelu_transcoder). Convert it with sae-lens first or file an issue."
        )
    norm = cfg.get("normalize_activations", "none")
    if norm not in _IDENTITY_NORMALIZATION:
        raise MechinterpError(
            f"normalize_activations={norm!r} is not supported; fold the normalisation into the weights with sae-lens "
            "(e.g. sae.fold_activation_norm_scaling_factor) and save again."
        )
    reshape = cfg.get("reshape_activations", "none") or "none"
    if reshape not in ("none", "hook_z"):
        raise MechinterpError(f"reshape_activations={reshape!r} is not supported (supported: 'none', 'hook_z').")
    state = load_file(str(weights_path))
    if "scaling_factor" in state:
        if not torch.allclose(state["scaling_factor"], torch.ones_like(state["scaling_factor"])):
            raise MechinterpError("The checkpoint has a finetuning scaling_factor; fold it into W_dec with sae-lens first.")
        del state["scaling_factor"]
    meta = cfg.get("metadata") or {}
    transcoder = arch.endswith("transcoder")
    want_dtype = dtype or _DTYPES.get(str(cfg.get("dtype", "float32")).removeprefix("torch."), torch.float32)
    sae = SparseAutoencoder(
        int(cfg["d_in"]), int(cfg["d_sae"]), base, k=int(cfg["k"]) if base == "topk" else None,
        d_out=int(cfg["d_out"]) if transcoder else None, apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", not transcoder)),
        hook_name=meta.get("hook_name", cfg.get("hook_name")), hook_name_out=meta.get("hook_name_out"),
        model_name=meta.get("model_name", cfg.get("model_name")), dtype=want_dtype, device=device,
        reshape_activations=reshape,
        hook_head_index=meta.get("hook_head_index", cfg.get("hook_head_index")) if reshape == "none" else None,
    )
    expected = {name for name, _ in sae.named_parameters()}
    if set(state) != expected:
        raise MechinterpError(f"{weights_path} holds {sorted(state)}; a {arch} SAE needs {sorted(expected)}.")
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if tuple(state[name].shape) != tuple(p.shape):
                raise MechinterpError(f"{name} has shape {tuple(state[name].shape)} in {weights_path}; cfg.json says {tuple(p.shape)}.")
            p.copy_(state[name].to(p.dtype))
        if base == "topk" and cfg.get("rescale_acts_by_decoder_norm", False):
            _fold_decoder_norm_topk(sae)
    sae.requires_grad_(False)
    if meta.get("mechinterp_max_input_norm") is not None:
        sae.max_input_norm = float(meta["mechinterp_max_input_norm"])
    return sae


def _fold_decoder_norm_topk(sae: SparseAutoencoder) -> None:
    """SAELens's ``rescale_acts_by_decoder_norm``: topk over ``pre · ‖W_dec‖``, decode with ``f / ‖W_dec‖``.
    Folding the norms into the encoder and normalising the decoder gives the same outputs."""
    norms = sae.W_dec.norm(dim=-1)
    sae.W_enc.mul_(norms[None, :])
    sae.b_enc.mul_(norms)
    sae.W_dec.div_(norms[:, None])


def _upgrade(cfg: dict[str, Any]) -> dict[str, Any]:
    """Pre-6.0 SAELens configs: rename keys and move hook fields into ``metadata``."""
    version = cfg.get("sae_lens_version") or (cfg.get("metadata") or {}).get("sae_lens_version")
    if version and not str(version).startswith(("0", "1", "2", "3", "4", "5")):
        return cfg
    renames = {"hook_point": "hook_name", "hook_point_head_index": "hook_head_index", "activation_fn_str": "activation_fn"}
    cfg = {renames.get(k, k): v for k, v in cfg.items()}
    cfg.setdefault("apply_b_dec_to_input", True)
    if "architecture" not in cfg:
        kwargs = cfg.get("activation_fn_kwargs") or {}
        cfg["architecture"] = "topk" if cfg.get("activation_fn") == "topk" and kwargs.get("k") else "standard"
        if cfg["architecture"] == "topk":
            cfg["k"] = kwargs["k"]
    meta = dict(cfg.get("metadata") or {})
    for key in ("hook_name", "hook_head_index", "model_name", "context_size", "prepend_bos"):
        if key in cfg:
            meta.setdefault(key, cfg[key])
    cfg["metadata"] = meta
    return cfg
