"""A model too large for one GPU: its layers split over the GPUs of one host (TransformerLens's ``n_devices``).

TransformerLens runs block ``i`` of a model with ``cfg.n_devices = n`` on
``cuda:(first + i * n // n_layers)`` (``get_device_for_block_index``; the forward pass moves
the residual stream there before each block). TransformerLens 3.9's own placement,
``move_model_modules_to_device``, puts every module on the *one* device with the most free
memory instead, so the forward pass moves the residual to devices that hold no weights and
fails (one reason its ``n_devices`` is reported unreliable). :func:`split_over_devices`
places the modules where the forward pass looks for them: the embeddings with block 0, each
block on its own device, the final norm and unembedding with the last block.
``mechinterp.load(..., n_devices=n)`` calls it.

What each family does on a split model (:data:`MULTI_DEVICE_SUPPORT`): the fast paths that
re-run one block from cached activations or unembed only the read positions step aside
(:data:`mechinterp.core.fastpath.GUARDS`, "model split over devices") and those runs take
the plain full forward pass; the numbers are the same, only slower.

Example:
    >>> from mechinterp.core.devices import layer_devices
    >>> [str(d) for d in layer_devices(4, 2, "cuda:0")]  # 4 blocks over 2 GPUs
    ['cuda:0', 'cuda:0', 'cuda:1', 'cuda:1']
"""

from __future__ import annotations

from typing import Any

import torch

from mechinterp.errors import ModelLoadError

__all__ = ["MULTI_DEVICE_SUPPORT", "check_n_devices", "layer_devices", "split_over_devices", "model_devices"]

#: family -> what it does on a model split over devices (``n_devices > 1``). "Checked on CPU" means: with
#: ``cfg.n_devices = 2`` on one device (TransformerLens keeps CPU models on the CPU), the family runs the
#: multi-device code path (fast paths stepping aside) and gives the numbers of ``n_devices = 1``
#: (``tests/core/test_devices.py``). No run on several GPUs has been made yet.
MULTI_DEVICE_SUPPORT: dict[str, str] = {
    "core (SharedCache)": "runs; activations are copied to the cache's store_device (CPU by default). Checked on CPU.",
    "patching": "the block re-runs from cached activations and the read-position unembedding step aside "
                "(GUARDS: 'model split over devices'); the patched runs take full forward passes. Checked on CPU.",
    "attribution": "runs through TransformerLens's forward pass, which moves the residual to each block's device. "
                   "Checked on CPU.",
    "circuits": "edge patching holds every sender's output in one buffer and adds it into later blocks' inputs; "
                "across GPUs this needs the buffer on each block's device: checked on CPU only, not on GPUs.",
    "attention, lens, probes, features, explain, influence, dictionary": "read hooked activations; not checked on a "
                                                                         "split model.",
}


def check_n_devices(n_devices: Any, device: Any = None) -> int:
    """``n_devices`` as an int, checked against the GPUs of this host.

    Raises:
        ModelLoadError: not a positive integer, a split on a non-CUDA device, or more devices
            than the host has from ``device``'s index on.
    """
    if isinstance(n_devices, bool) or not isinstance(n_devices, int) or n_devices < 1:
        raise ModelLoadError(f"n_devices must be a positive integer (the GPUs to split the layers over), got {n_devices!r}.")
    if n_devices == 1:
        return 1
    dev = torch.device(device if device is not None else "cuda")
    if dev.type != "cuda":
        raise ModelLoadError(
            f"n_devices={n_devices} splits the layers over CUDA GPUs, but device={str(dev)!r}: pass device='cuda' "
            "(or leave it unset) on a host with several GPUs, or n_devices=1.")
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    first = dev.index or 0
    if first + n_devices > available:
        raise ModelLoadError(
            f"n_devices={n_devices} from cuda:{first} needs GPUs cuda:{first}..cuda:{first + n_devices - 1}, but this host "
            f"has {available} GPU(s): pass n_devices={max(1, available - first)} or fewer"
            + (", or run on one device." if available else "; without a GPU leave n_devices unset (CPU)."))
    return n_devices


def layer_devices(n_layers: int, n_devices: int, device: str | torch.device = "cuda:0") -> list[torch.device]:
    """The device of each block: TransformerLens's ``get_device_for_block_index`` for ``n_layers`` over ``n_devices``."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return [dev] * n_layers
    first = dev.index or 0
    return [torch.device(dev.type, first + (i * n_devices) // n_layers) for i in range(n_layers)]


def split_over_devices(model: Any, n_devices: int, device: str | torch.device = "cuda") -> Any:
    """Place ``model``'s blocks over ``n_devices`` GPUs where TransformerLens's forward pass expects them; returns it.

    Sets ``cfg.n_devices`` and ``cfg.device`` (the first GPU) and moves the embeddings to block 0's
    device, block ``i`` to ``layer_devices(...)[i]``, the final norm and unembedding to the last
    block's. ``model.to(device)`` afterwards undoes the split.

    Raises:
        ModelLoadError: see :func:`check_n_devices`.
    """
    n = check_n_devices(n_devices, device)
    dev = torch.device(device if device is not None else "cuda")
    first = torch.device(dev.type, dev.index or 0) if dev.type == "cuda" else dev
    model.cfg.n_devices = n
    model.cfg.device = str(first)
    places = layer_devices(model.cfg.n_layers, n, first)
    for name in ("embed", "hook_embed", "pos_embed", "hook_pos_embed", "hook_tokens"):
        if hasattr(model, name):
            getattr(model, name).to(places[0])
    for block, place in zip(model.blocks, places):
        block.to(place)
    for name in ("ln_final", "unembed"):
        if hasattr(model, name):
            getattr(model, name).to(places[-1])
    return model


def model_devices(model: Any) -> list[str]:
    """The devices ``model``'s parameters live on, in order of first use (one entry for an unsplit model)."""
    seen: list[str] = []
    for p in model.parameters():
        if str(p.device) not in seen:
            seen.append(str(p.device))
    return seen
