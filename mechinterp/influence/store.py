"""Projected training gradients, held in memory or streamed to disk under a byte budget.

The ``[n_train, dim]`` matrix of projected gradients is written batch by batch. If it fits
in ``memory_budget`` it stays in memory; otherwise every batch is appended to a ``.npy`` file
(the shared cache's :class:`~mechinterp.core.storage.DiskStore`) and scoring reads it back
in row chunks of at most a quarter of the budget, so the resident memory of the scores
never grows with the training set.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.storage import DiskStore, MemoryStore, parse_bytes
from mechinterp.errors import MechinterpError

__all__ = ["GradientStore"]


class GradientStore:
    """Rows of projected gradients, in memory or on disk.

    Args:
        n: number of rows (training sequences).
        dim: length of each row.
        memory_budget: bytes (``"2GB"``, ``"512MiB"``, a number, or ``None`` for no limit)
            the matrix may take in memory; above it, the rows go to disk.
        directory: where the ``.npy`` file goes (a temporary folder if ``None``).
    """

    def __init__(self, n: int, dim: int, memory_budget: int | float | str | None = "1GB", directory: str | Path | None = None) -> None:
        self.budget = parse_bytes(memory_budget)
        if self.budget <= 0:
            raise MechinterpError(f"memory_budget must be positive, got {memory_budget!r}.")
        self.n, self.dim = n, dim
        self.nbytes = n * dim * 4
        self.on_disk = self.nbytes > self.budget
        if self.on_disk:
            self._tmp = None
            if directory is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="mechinterp-influence-")
                directory = self._tmp.name
            self._store = DiskStore(n, (dim,), torch.float32, Path(directory) / f"grads-{id(self)}.npy")
        else:
            self._store = MemoryStore(n, (dim,), torch.float32)
        self.norms = torch.zeros(n)

    @property
    def chunk_rows(self) -> int:
        """Rows read at once when scoring: at most a quarter of the budget (at least one row)."""
        if math.isinf(self.budget):
            return self.n
        return max(1, min(self.n, int(self.budget // 4 // (self.dim * 4))))

    def append(self, rows: Float[Tensor, "batch dim"], norms: Float[Tensor, " batch"]) -> None:
        """Write the next rows, with the exact (unprojected) gradient norms."""
        start = self._store.filled
        self.norms[start : start + len(rows)] = norms.detach().cpu().float()
        self._store.append(rows.detach().cpu().float())

    @property
    def filled(self) -> int:
        return self._store.filled

    def chunks(self) -> Iterator[tuple[int, Tensor]]:
        """``(start, rows)`` blocks of at most :attr:`chunk_rows` rows: views of the store (on disk,
        of the memory map: file pages the kernel can drop, no copy in the process's own memory)."""
        data = self._store.read()
        step = self.chunk_rows
        for start in range(0, self.n, step):
            yield start, data[start : start + step]

    def dot(self, queries: Float[Tensor, "q dim"]) -> Float[Tensor, "q n"]:
        """``queries @ rows.T``, chunk by chunk."""
        out = torch.empty(len(queries), self.n)
        q = queries.detach().cpu().float()
        for start, block in self.chunks():
            out[:, start : start + len(block)] = q @ block.T
        return out
