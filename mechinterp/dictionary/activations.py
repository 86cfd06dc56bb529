"""Streaming training batches of one site's activations, with bounded memory.

:class:`ActivationStream` reads a site of a :class:`~mechinterp.core.SharedCache` (or a
tensor, e.g. a spilled, memory-mapped one) a block of prompts at a time, drops padding
positions, and mixes tokens through a shuffle buffer before cutting training batches. Host
memory is bounded by ``buffer_size`` tokens plus one block, whatever the dataset's size;
the cache's own ``memory_budget`` decides whether the site lives in memory or on disk.

With ``site_out`` the stream yields aligned pairs (input, output) for a transcoder, e.g.
``mlp_in`` → ``mlp_out`` of one layer.

Per-head sites (``z``, ``q``, ``k``, ``v``, ``result``: ``[..., head_index, d_head]``) give one
vector per token: all heads flattened (``n_heads × d_head``, SAELens's ``hook_z`` layout), or
one head's ``d_head`` vector with ``head=``.

Example:
    >>> import torch
    >>> from mechinterp.dictionary import ActivationStream
    >>> stream = ActivationStream(torch.randn(100, 8), batch_size=32, buffer_size=64)
    >>> [tuple(b.shape) for b in stream]
    [(32, 8), (32, 8), (32, 8), (4, 8)]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from mechinterp.core.cache import SharedCache
from mechinterp.core.sites import SiteSpec, resolve
from mechinterp.errors import EmptyInputError, MechinterpError, ShapeMismatchError

__all__ = ["ActivationStream", "PER_HEAD_HOOKS", "is_per_head", "massive_norm"]

#: hook-name endings whose activations carry a head dimension before the last one
PER_HEAD_HOOKS = ("hook_z", "hook_q", "hook_k", "hook_v", "hook_result")


def is_per_head(hook_name: str | None) -> bool:
    """Whether the TransformerLens hook's activation is ``[..., head_index, d_head]``."""
    return hook_name is not None and hook_name.endswith(PER_HEAD_HOOKS)


class ActivationStream:
    """Shuffled batches of token activations from a cache site or a tensor.

    Args:
        source: a :class:`SharedCache`, or a tensor ``[..., d]`` of activations (every row
            a token; no padding).
        site: the cache site (``("resid_post", 3)`` or a hook name); required for a cache.
        site_out: a second site for transcoders (the stream then yields ``(x, y)`` pairs).
        batch_size: tokens per training batch.
        buffer_size: tokens held in the shuffle buffer (the memory bound).
        block_rows: prompts (or tensor rows) read from the source at a time.
        seed: shuffling seed (each epoch reshuffles).
        device: where batches go (e.g. the GPU the SAE trains on).
        head: for a per-head site, train on this head only (default: all heads flattened).
        skip_first: leave position 0 of every prompt out: BOS, or in a model without one the
            first token, which acts as the attention sink with a residual norm tens to
            thousands of times the others' (SAELens leaves BOS out too). Needs activations with
            a position axis (a cache with ``positions="all"`` or a ``[batch, pos, d]`` tensor).
        max_norm: leave out tokens whose (input) vector has a larger norm: the "massive
            activations" of real models (a first-token sink, a first delimiter), which would
            otherwise take most of an SAE's latents; :func:`train_sae` then sets the SAE's
            ``max_input_norm`` so that it encodes none of them.

    Attributes:
        hook_name, hook_name_out: the resolved hook names (``None`` for a tensor).
        d_in, d_out: widths of the activations.
        n_tokens: tokens per epoch.
    """

    def __init__(
        self,
        source: SharedCache | Tensor,
        site: SiteSpec | None = None,
        *,
        site_out: SiteSpec | None = None,
        batch_size: int = 4096,
        buffer_size: int = 2**16,
        block_rows: int = 64,
        seed: int = 0,
        device: str | torch.device = "cpu",
        head: int | None = None,
        skip_first: bool = False,
        max_norm: float | None = None,
    ) -> None:
        if batch_size < 1 or buffer_size < 1 or block_rows < 1:
            raise MechinterpError("batch_size, buffer_size and block_rows must be positive.")
        self.batch_size, self.buffer_size, self.block_rows = batch_size, buffer_size, block_rows
        self.seed, self.device, self.epoch = seed, torch.device(device), 0
        self.hook_name = self.hook_name_out = None
        self.head, self.per_head = head, False
        self.skip_first = bool(skip_first)
        self.max_norm = max_norm
        self._mask: Tensor | None = None
        if isinstance(source, SharedCache):
            if site is None:
                raise MechinterpError("Pass the site to train on, e.g. site=('resid_post', 3).")
            self.hook_name = _one_hook(source, site)
            self._x = source.get(self.hook_name)
            self._y = None
            if site_out is not None:
                self.hook_name_out = _one_hook(source, site_out)
                self._y = source.get(self.hook_name_out)
            if source.positions == "all":
                self._mask = source.attention_mask.bool()
            self.per_head = is_per_head(self.hook_name)
            if self.per_head and (site_out is not None):
                raise MechinterpError("Transcoders read and write one vector per token; per-head sites are for SAEs.")
        elif isinstance(source, Tensor):
            if site_out is not None:
                raise MechinterpError("site_out needs a SharedCache; for tensors pass ActivationStream((x, y)) instead.")
            self._x, self._y = source, None
        elif isinstance(source, tuple) and len(source) == 2 and all(isinstance(t, Tensor) for t in source):
            self._x, self._y = source
        else:
            raise MechinterpError(f"source must be a SharedCache, a tensor or an (input, output) tensor pair; got {type(source).__name__}.")
        if head is not None and not self.per_head:
            raise MechinterpError(f"head={head} needs a per-head site (z, q, k, v or result); {self.hook_name!r} has no heads.")
        if self.per_head:
            n_heads = int(self._x.shape[-2])
            if head is not None and not (isinstance(head, int) and 0 <= head < n_heads):
                raise MechinterpError(f"head must be an index in [0, {n_heads}), got {head!r}.")
        if self._x.ndim < 2 or self._x.shape[0] == 0:
            raise EmptyInputError(f"No activations to train on (shape {tuple(self._x.shape)}).")
        if self._y is not None and self._y.shape[:-1] != self._x.shape[:-1]:
            raise ShapeMismatchError(f"Input {tuple(self._x.shape)} and output {tuple(self._y.shape)} activations do not line up.")
        token_ndim = self._x.ndim - (1 if self.per_head else 0)
        if token_ndim > 3 or (self._mask is not None and token_ndim != 3):
            raise MechinterpError(
                f"Site activations have shape {tuple(self._x.shape)}; SAEs read one vector per token. Per-head "
                "sites (z, q, k, v, result) are read as [..., head_index, d_head] (flattened, or one head with head=)."
            )
        if self.skip_first:
            if token_ndim != 3:
                raise MechinterpError("skip_first needs activations with a position axis: a SharedCache built with "
                                      "positions='all' or a [batch, pos, d] tensor.")
            if self._mask is None:
                self._mask = torch.ones(self._x.shape[:2], dtype=torch.bool)
            self._mask = self._mask.clone()
            self._mask[:, 0] = False
        width = int(self._x.shape[-1])
        self.d_in = width if not self.per_head or head is not None else width * int(self._x.shape[-2])
        self.d_out = int(self._y.shape[-1]) if self._y is not None else self.d_in
        self.n_tokens = sum(len(x) for x, _ in self._blocks(torch.Generator().manual_seed(0))) if max_norm is not None else (
            int(self._mask.sum()) if self._mask is not None else self._x[..., 0].numel())
        if self.n_tokens == 0:
            raise EmptyInputError("The site holds no real (non-padding) tokens.")

    @property
    def paired(self) -> bool:
        return self._y is not None

    def _blocks(self, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor | None]]:
        n = self._x.shape[0]
        starts = torch.arange(0, n, self.block_rows)
        for start in starts[torch.randperm(len(starts), generator=generator)].tolist():
            rows = slice(start, min(n, start + self.block_rows))
            x = torch.as_tensor(self._x[rows]).float()
            if self.per_head:  # [..., head_index, d_head] -> one head, or all heads flattened
                x = x[..., self.head, :] if self.head is not None else x.flatten(-2)
            y = torch.as_tensor(self._y[rows]).float() if self._y is not None else None
            if self._mask is not None:
                keep = self._mask[rows, : x.shape[1]]
                x, y = x[keep], (y[keep] if y is not None else None)
            else:
                x, y = x.reshape(-1, self.d_in), (y.reshape(-1, self.d_out) if y is not None else None)
            if self.max_norm is not None:
                small = x.norm(dim=-1) <= self.max_norm
                x, y = x[small], (y[small] if y is not None else None)
            yield x, y

    def __iter__(self) -> Iterator[Any]:
        generator = torch.Generator().manual_seed(self.seed + 7919 * self.epoch)
        self.epoch += 1
        xs: list[Tensor] = []
        ys: list[Tensor] = []
        held = 0
        for x, y in self._blocks(generator):
            xs.append(x)
            if y is not None:
                ys.append(y)
            held += len(x)
            if held >= self.buffer_size:
                bx, by = self._shuffled(xs, ys, generator)
                cut = max(self.batch_size, (len(bx) // 2) // self.batch_size * self.batch_size)  # emit half, keep half
                yield from self._batches(bx[:cut], by[:cut] if by is not None else None)
                xs, ys = [bx[cut:]], ([by[cut:]] if by is not None else [])
                held = len(bx) - cut
        if held:
            bx, by = self._shuffled(xs, ys, generator)
            yield from self._batches(bx, by)

    def _shuffled(self, xs: list[Tensor], ys: list[Tensor], generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        bx = torch.cat(xs)
        order = torch.randperm(len(bx), generator=generator)
        return bx[order], (torch.cat(ys)[order] if ys else None)

    def _batches(self, bx: Tensor, by: Tensor | None) -> Iterator[Any]:
        for start in range(0, len(bx), self.batch_size):
            x = bx[start : start + self.batch_size].to(self.device)
            yield x if by is None else (x, by[start : start + self.batch_size].to(self.device))

    def sample(self, n: int) -> Tensor | tuple[Tensor, Tensor]:
        """Up to ``n`` tokens from the start of a shuffled pass (for initialisation and scaling)."""
        xs, ys, held = [], [], 0
        for x, y in self._blocks(torch.Generator().manual_seed(self.seed)):
            xs.append(x)
            ys.append(y)
            held += len(x)
            if held >= n:
                break
        x = torch.cat(xs)[:n].to(self.device)
        return x if not self.paired else (x, torch.cat(ys)[:n].to(self.device))  # type: ignore[arg-type]


def massive_norm(cache: SharedCache, site: SiteSpec, ratio: float = 10.0, *, skip_first: bool = True) -> tuple[float, int]:
    """A norm above which a token is a "massive activation" (Sun et al. 2024): ``ratio`` × the median norm.

    Over the real tokens of ``site`` in ``cache`` (position 0 left out with ``skip_first``).
    Pass the threshold to ``train_sae(max_norm=)``.

    Returns:
        ``(threshold, how many of those tokens exceed it)``.

    Example:
        >>> import mechinterp
        >>> from mechinterp.dictionary import massive_norm
        >>> model = mechinterp.load("zoo:toy-lm")
        >>> cache = mechinterp.SharedCache(model, ["the cat sat on the mat"] * 4, positions="all", progress=False)
        >>> threshold, n_massive = massive_norm(cache, ("resid_post", 1))
        >>> n_massive
        0
    """
    if not ratio > 0:
        raise MechinterpError(f"ratio must be positive (a multiple of the median norm), got {ratio!r}.")
    if not (isinstance(cache.positions, str) and cache.positions == "all"):
        raise MechinterpError("massive_norm reads every position: build the SharedCache with positions='all'.")
    hook = _one_hook(cache, site)
    real = cache.attention_mask.bool().clone()
    if skip_first:
        real[:, 0] = False
    norms = torch.as_tensor(cache.get(hook)).float().norm(dim=-1)[real]
    if norms.numel() == 0:
        raise EmptyInputError("No tokens to measure (every prompt is one token long with skip_first=True).")
    threshold = ratio * float(norms.median())
    return threshold, int((norms > threshold).sum())


def _one_hook(cache: SharedCache, site: SiteSpec) -> str:
    names = resolve(cache.model, site)
    if len(names) != 1:
        raise MechinterpError(f"{site!r} names {len(names)} hooks; give one layer, e.g. ({site!r}, 3).")
    return names[0]
