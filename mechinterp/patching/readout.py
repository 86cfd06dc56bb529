"""Which logits a metric reads, so that batched patched runs compute only those.

A metric maps logits ``[batch, pos, d_vocab]`` to one number per prompt; most read a single
position per prompt (the answer position). Computing the final LayerNorm and unembedding at
every position is then mostly waste (for GPT-2, a 50257-wide matmul per position is worth
about five blocks), and so is the last block at positions nothing reads. A :class:`Readout`
records the positions a metric reads, per prompt, so the engine can skip the rest.

How the positions are found, for any callable:

1. *Declared*: a metric with a ``positions`` attribute (an int, ``[batch]`` or
   ``[batch, k]`` positions; the named metrics of :mod:`mechinterp.patching.inputs` set it).
2. *Otherwise probed*: positions where the gradient of the metric at the base run's logits
   is not zero. The last position is always added.
3. *Verified*: at the base logits, the metric must return bitwise the same values when every
   other position is replaced by NaN, and again by random values. If not (or if anything
   raises), there is no readout and the engine computes full logits.

When a readout is used, the metric still receives logits of the full shape
``[batch, pos, d_vocab]``, with the positions it reads filled in and NaN elsewhere. A read of
a position that was not computed therefore gives NaN, and the engine then recomputes that
chunk with full logits (:func:`local_values` leaves the finiteness check to the engine). A
metric can thus never silently read a value that was not computed.

Example:
    >>> readout = find_readout(metric, base_logits)  # doctest: +SKIP
    >>> readout.positions.shape  # [batch, k]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

__all__ = ["Readout", "find_readout", "local_values"]


@dataclass(frozen=True)
class Readout:
    """The positions a metric reads.

    Attributes:
        positions: ``[batch, k]`` positions read per prompt (rows padded by repeating a
            position, so duplicates are allowed).
        mask: ``[batch, pos]`` the same as a boolean mask.
        first: the earliest position any prompt reads.
    """

    positions: Int[Tensor, "batch k"]
    mask: Bool[Tensor, "batch pos"]
    first: int

    @property
    def k(self) -> int:
        return self.positions.shape[1]


def _declared(metric: Any, batch: int, n_pos: int, device: Any) -> Tensor | None:
    pos = getattr(metric, "positions", None)
    if pos is None:
        return None
    pos = torch.as_tensor(pos, device=device).long()
    if pos.ndim == 0:
        pos = pos.expand(batch)
    if pos.ndim == 1:
        pos = pos[:, None]
    if pos.ndim != 2 or pos.shape[0] != batch:
        return None
    mask = torch.zeros(batch, n_pos, dtype=torch.bool, device=device)
    mask.scatter_(1, pos % n_pos, True)
    return mask


def _probed(metric: Callable[[Tensor], Any], logits: Tensor) -> Tensor:
    x = logits.detach().clone().requires_grad_(True)
    mask = torch.zeros(logits.shape[:2], dtype=torch.bool, device=logits.device)
    try:
        with torch.enable_grad():
            value = metric(x)
            if isinstance(value, Tensor) and value.requires_grad:
                (grad,) = torch.autograd.grad(value.sum(), x, allow_unused=True)
                if grad is not None:
                    mask = (grad != 0).any(-1)  # NaN gradients count as read
    except Exception:  # noqa: BLE001 - a metric without gradients: fall back to the last position
        pass
    return mask


def _same(metric: Callable[[Tensor], Any], x: Tensor, ref: Tensor) -> bool:
    try:
        out = metric(x)
    except Exception:  # noqa: BLE001 - a metric that fails on the probe is not position-local
        return False
    return isinstance(out, Tensor) and out.shape == ref.shape and bool(torch.equal(out.detach(), ref))


def find_readout(metric: Callable[[Tensor], Any], logits: Float[Tensor, "batch pos d_vocab"]) -> Readout | None:
    """The positions ``metric`` reads, verified on ``logits`` (the base run's); ``None``: use full logits."""
    batch, n_pos = logits.shape[:2]
    with torch.no_grad():
        try:
            ref = metric(logits)
        except Exception:  # noqa: BLE001 - the full path raises its own error
            return None
        if not isinstance(ref, Tensor) or not torch.isfinite(ref).all():
            return None
        ref = ref.detach()
    mask = _declared(metric, batch, n_pos, logits.device)
    if mask is None:
        mask = _probed(metric, logits)
    mask = mask.clone()
    mask[:, -1] = True
    if bool(mask.all()):
        return None  # nothing to skip
    keep = mask[..., None]
    gen = torch.Generator(device=logits.device).manual_seed(0)
    noise = torch.randn(logits.shape, generator=gen, device=logits.device, dtype=logits.dtype)
    with torch.no_grad():
        if not _same(metric, logits.masked_fill(~keep, float("nan")), ref):
            return None
        if not _same(metric, torch.where(keep, logits, noise * (10 * logits.std() + 1)), ref):
            return None
    counts = mask.sum(1)
    k = int(counts.max())
    rows = []
    for b in range(batch):
        idx = mask[b].nonzero().flatten()
        rows.append(torch.cat([idx, idx[-1:].expand(k - len(idx))]))
    positions = torch.stack(rows)
    return Readout(positions=positions, mask=mask, first=int(positions.min()))


def local_values(
    metric: Callable[[Tensor], Any],
    local: Float[Tensor, "rows k d_vocab"],
    readout: Readout,
    n_pos: int,
    check: Callable[[Any, int], Tensor],
) -> Float[Tensor, "variant batch"]:
    """The metric of each variant from logits computed only at the read positions.

    ``local`` holds ``[variant * batch, k, d_vocab]`` logits at ``readout.positions``; each
    variant's metric gets full-shaped logits with NaN at the positions not computed.
    ``check(value, batch)`` checks the shape of one value (finiteness is the caller's).
    """
    batch, k = readout.positions.shape
    reps = local.shape[0] // batch
    rows = torch.arange(batch, device=local.device)[:, None].expand(batch, k)
    out = []
    # One NaN buffer for the chunk: every variant writes the same read positions, so the
    # positions not computed stay NaN (a [batch, pos, d_vocab] fill per variant cost 4% of a
    # CPU sweep on a 49k vocabulary). Values are copied out: a metric may return a view.
    full = torch.full((batch, n_pos, local.shape[-1]), float("nan"), device=local.device, dtype=local.dtype)
    for j in range(reps):
        full[rows, readout.positions] = local[j * batch : (j + 1) * batch]
        out.append(check(metric(full), batch).clone())
    return torch.stack(out)
