"""Reading large (memory-mapped) feature matrices in row chunks with bounded memory.

The shared cache spills sites over its ``memory_budget`` to ``.npy`` files and returns
memory-mapped tensors. Reading such a tensor pulls its pages into the process, and they
stay resident (and counted in RSS) until the kernel needs the memory. :func:`iter_rows`
reads a chunk at a time and hands the pages of a file-backed chunk back to the kernel
after copying it (``madvise(MADV_PAGEOUT)``, Linux only; a no-op elsewhere and for
ordinary in-memory tensors), so a pass over a dataset larger than the budget keeps the
resident set near one chunk.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["iter_rows", "release_pages", "is_file_backed"]

_MADV_PAGEOUT = 21
_libc: ctypes.CDLL | None = None


def _madvise() -> ctypes.CDLL | None:
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return _libc


def is_file_backed(x: Tensor) -> bool:
    """Whether ``x``'s memory lies in a file mapping (e.g. a spilled cache site)."""
    if not sys.platform.startswith("linux") or x.device.type != "cpu" or x.numel() == 0:
        return False
    addr = x.data_ptr()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split()
                lo, hi = (int(v, 16) for v in parts[0].split("-"))
                if lo <= addr < hi:
                    return len(parts) >= 6 and parts[5].startswith("/")
    except OSError:
        return False
    return False


def release_pages(x: Tensor) -> None:
    """Hand the resident pages of a file-backed tensor back to the kernel (values unchanged)."""
    libc = _madvise()
    if libc is None or x.numel() == 0:
        return
    span = 1 + sum((size - 1) * abs(stride) for size, stride in zip(x.shape, x.stride()))  # covers strided views
    start = x.data_ptr() - x.data_ptr() % mmap.PAGESIZE
    end = x.data_ptr() + span * x.element_size()
    libc.madvise(start, end - start, _MADV_PAGEOUT)


_ALIGN = 2 << 20  # release whole 2 MiB windows: the kernel skips large folios a range only partly covers


def _release_range(start: int, end: int) -> None:
    libc = _madvise()
    if libc is not None and end > start:
        libc.madvise(start, end - start, _MADV_PAGEOUT)


def iter_rows(
    features: Sequence[Tensor], chunk_rows: int | None, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Iterator[tuple[slice, Tensor]]:
    """Yield ``(rows, block)`` with ``block = stack([f[rows] for f in features])``: ``[cells, chunk, d]``.

    Args:
        features: per-cell ``[n, d]`` tensors of the same ``n`` (may be memory-mapped).
        chunk_rows: rows per chunk; ``None`` reads everything at once.
        device, dtype: where and how the block is returned.
    """
    n = features[0].shape[0]
    step = n if chunk_rows is None else max(1, int(chunk_rows))
    backed = [is_file_backed(f) for f in features] if chunk_rows is not None else [False] * len(features)
    released = {i: f.data_ptr() - f.data_ptr() % _ALIGN for i, f in enumerate(features) if backed[i]}
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        block = torch.stack([f[rows].to(dtype) for f in features]).to(device)
        for i, f in enumerate(features):
            if backed[i]:  # hand back the complete windows read so far
                upto = f.data_ptr() + rows.stop * f.stride(0) * f.element_size()
                upto -= upto % _ALIGN
                _release_range(released[i], upto)
                released[i] = max(released[i], upto)
        yield rows, block
    for i, f in enumerate(features):
        if backed[i]:
            release_pages(f)
