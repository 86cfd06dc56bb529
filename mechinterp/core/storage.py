"""Where cached activations live: in memory, or spilled to ``.npy`` files on disk.

Both stores are filled batch by batch, in order, and read back as one tensor. The disk
store writes each batch straight to the file (no memory map while writing, so dirty
pages never pile up in the process's memory) and reads back through a copy-on-write
memory map: the tensor looks like any other, and only the pages you touch are loaded.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["AbstractStore", "MemoryStore", "DiskStore", "parse_bytes"]

_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_bytes(size: int | float | str | None) -> float:
    """``"2GB"``, ``"512MiB"``, ``1e9`` or ``None`` (no limit) as a number of bytes."""
    if size is None:
        return math.inf
    if isinstance(size, (int, float)):
        return float(size)
    match = re.fullmatch(r"\s*([\d.]+)\s*([a-zA-Z]*)\s*", size)
    if not match or match.group(2).lower() not in _UNITS:
        from mechinterp.errors import MechinterpError

        raise MechinterpError(f"Cannot read the size {size!r}; write it like '2GB', '512MiB' or 1e9 (bytes).")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


class AbstractStore(ABC):
    """A ``[n, *shape]`` array filled in consecutive row blocks, then read as a tensor."""

    def __init__(self, n: int, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.n, self.shape, self.dtype = n, tuple(shape), dtype
        self.filled = 0

    @property
    def nbytes(self) -> int:
        return self.n * math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()

    @abstractmethod
    def append(self, block: Tensor) -> None:
        """Write the next ``len(block)`` rows."""

    @abstractmethod
    def read(self) -> Tensor:
        """The whole array as a tensor (after every row was written)."""

    on_disk = False


class MemoryStore(AbstractStore):
    """Rows held in one preallocated tensor on ``device`` (the CPU by default)."""

    def __init__(self, n: int, shape: tuple[int, ...], dtype: torch.dtype, device: str | torch.device = "cpu") -> None:
        super().__init__(n, shape, dtype)
        self._data = torch.empty((n, *shape), dtype=dtype, device=device)

    def append(self, block: Tensor) -> None:
        self._data[self.filled : self.filled + len(block)] = block.detach().to(self._data.device, self.dtype)
        self.filled += len(block)

    def read(self) -> Tensor:
        return self._data


class DiskStore(AbstractStore):
    """Rows appended to a ``.npy`` file and read back through a memory map."""

    on_disk = True

    def __init__(self, n: int, shape: tuple[int, ...], dtype: torch.dtype, path: str | Path) -> None:
        super().__init__(n, shape, dtype)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._np_dtype = torch.empty((), dtype=dtype).numpy().dtype if dtype != torch.bfloat16 else np.dtype("float32")
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed when the last row is written
        np.lib.format.write_array_header_1_0(
            self._file, {"descr": np.lib.format.dtype_to_descr(self._np_dtype), "fortran_order": False, "shape": (n, *self.shape)}
        )
        self._view: Tensor | None = None

    def append(self, block: Tensor) -> None:
        array = block.detach().to("cpu").to(torch.float32 if self.dtype == torch.bfloat16 else self.dtype).contiguous().numpy()
        self._file.write(array.tobytes())
        self.filled += len(block)
        if self.filled >= self.n:
            self._file.close()

    def read(self) -> Tensor:
        if self._view is None:
            if not self._file.closed:
                self._file.close()
            self._view = torch.from_numpy(np.load(self.path, mmap_mode="c"))
        return self._view

    def __del__(self) -> None:
        try:
            if not self._file.closed:
                self._file.close()
        except AttributeError:
            pass
