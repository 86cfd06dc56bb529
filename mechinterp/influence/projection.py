"""Random projection of gradients (TRAK / LoGra style) to bound memory.

Each parameter's gradient ``g`` (``numel`` entries) is projected to ``dim`` entries by a
seeded Gaussian matrix ``P`` ``[dim, numel]`` with entries ``N(0, 1/dim)`` (TRAK), so
``E[<P g, P q>] = <g, q>``: dot products, and so influence scores, are kept in expectation
with an error of about ``|g| |q| / sqrt(dim)``. When ``P`` would have more than
``max_dense`` entries (large matrices), the gradient is viewed as a matrix ``M`` ``[rows,
cols]`` (leading dimensions by the last) and projected as LoGra does, ``P_r M P_cᵀ`` with
``P_r`` ``[sqrt(dim), rows]`` and ``P_c`` ``[sqrt(dim), cols]``: far less memory, but the
error is then about ``|g| |q| (1/sqrt(k_r) + 1/sqrt(k_c))``, much larger for the same
``dim`` (measured on the planted-fact model: dense 1024 keeps the rankings, Kronecker 30x30
does not). A parameter with at most ``dim`` entries is kept exactly. The matrices are regenerated from ``(seed, parameter name)``, so the same
projection is applied to training and query gradients, in every process.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.errors import MechinterpError

__all__ = ["RandomProjection"]


class RandomProjection:
    """A fixed linear map from a dict of parameter gradients to one vector.

    Args:
        shapes: ``{name: param.shape}`` in a fixed order.
        dim: entries kept per parameter (about ``sqrt(dim)`` per side); ``None`` keeps
            every gradient entry (no projection: exact scores, memory grows with the model).
        seed: seeds the projection matrices.
        max_dense: largest dense projection matrix (entries) before the Kronecker form is used.

    Example:
        >>> proj = RandomProjection({"w": (64, 64)}, dim=256)
        >>> proj({"w": torch.ones(2, 64, 64)}).shape
        torch.Size([2, 256])
    """

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], dim: int | None = 1024, seed: int = 0, max_dense: int = 2**25) -> None:
        if dim is not None and (not isinstance(dim, int) or dim < 1):
            raise MechinterpError(f"projection_dim must be a positive integer or None (no projection), got {dim!r}.")
        self.shapes = {k: tuple(v) for k, v in shapes.items()}
        self.dim, self.seed = dim, seed
        self._mats: dict[str, tuple[Tensor | None, Tensor | None]] = {}
        self.sizes: dict[str, int] = {}
        self._dense: set[str] = set()
        for name, shape in self.shapes.items():
            numel = math.prod(shape)
            if dim is None or numel <= dim:
                self._mats[name] = (None, None)
                self.sizes[name] = numel
                continue
            gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
            if numel * dim <= max_dense:
                self._mats[name] = (torch.randn(dim, numel, generator=gen) / math.sqrt(dim), None)
                self._dense.add(name)
                self.sizes[name] = dim
                continue
            rows, cols = self._view(shape)
            side = math.isqrt(dim)
            k_r, k_c = (min(rows, side), min(cols, side)) if rows > 1 else (1, min(cols, dim))
            p_r = torch.randn(k_r, rows, generator=gen) / math.sqrt(k_r) if k_r < rows else None
            p_c = torch.randn(k_c, cols, generator=gen) / math.sqrt(k_c) if k_c < cols else None
            self._mats[name] = (p_r, p_c)
            self.sizes[name] = k_r * k_c
        self.out_dim = sum(self.sizes.values())

    @staticmethod
    def _view(shape: tuple[int, ...]) -> tuple[int, int]:
        return (math.prod(shape[:-1]) if len(shape) > 1 else 1), shape[-1]

    def __call__(self, grads: Mapping[str, Float[Tensor, "batch ..."]]) -> Float[Tensor, "batch out_dim"]:
        """Project a batch of gradients ``{name: [batch, *shape]}`` to ``[batch, out_dim]``."""
        parts = []
        for name, shape in self.shapes.items():
            g = grads[name]
            b = g.shape[0]
            p_r, p_c = self._mats[name]
            if p_r is None and p_c is None:
                parts.append(g.reshape(b, -1).float())
                continue
            if name in self._dense:
                parts.append(g.reshape(b, -1).float() @ p_r.to(g.device).T)
                continue
            m = g.reshape(b, *self._view(shape)).float()
            if p_c is not None:
                m = m @ p_c.to(m.device).T
            if p_r is not None:
                m = p_r.to(m.device) @ m
            parts.append(m.reshape(b, -1))
        return torch.cat(parts, dim=1)
