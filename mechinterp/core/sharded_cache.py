"""Caching a prompt set over several ranks: each rank runs its block, reads gather the whole set.

:class:`ShardedCache` is :class:`~mechinterp.core.cache.SharedCache` for a ``torchrun`` launch
(:mod:`mechinterp.core.distributed`). The prompts are tokenised once on the whole set (every
rank pads to the same width), each rank caches its contiguous block in its own
``SharedCache`` (``.local``: memory budget, spilling and memoisation as usual), and
:meth:`ShardedCache.get` / :meth:`ShardedCache.stack` gather the blocks in rank order, so every
rank reads exactly what a one-process ``SharedCache`` on all prompts holds. Outside a
distributed context of several ranks it is a plain ``SharedCache`` on all prompts.

Example:
    >>> import mechinterp
    >>> from mechinterp.core.sharded_cache import ShardedCache
    >>> model = mechinterp.load("zoo:attn-only-2l")
    >>> with mechinterp.distributed():  # torchrun --nproc-per-node 2 ...: each rank caches half
    ...     cache = ShardedCache(model, ["t1 t2 t3 t1 t2", "t4 t5 t4"], positions="last")
    ...     cache["resid_post", 1].shape
    torch.Size([2, 64])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import Tensor

from mechinterp.core.cache import Positions, SharedCache
from mechinterp.core.distributed import gather_results, gather_rows, shard_rows, sharding
from mechinterp.core.sites import SiteSpec, resolve, resolve_many
from mechinterp.core.tokens import Prompts, Tokenized, tokenize
from mechinterp.core.validation import check_task
from mechinterp.errors import MechinterpError

__all__ = ["ShardedCache"]


class ShardedCache:
    """Activations of one model on a prompt set, cached block by block over the ranks of a distributed run.

    Args:
        model: a ``HookedTransformer`` (on this rank's device).
        prompts: as :class:`~mechinterp.core.cache.SharedCache` takes them (texts, ids, a
            ``Tokenized``, a task).
        positions: as ``SharedCache``; per-prompt weight tensors ``[n_prompts, pos]`` are split
            with the prompts.
        prepend_bos, padding_side: tokenisation of text prompts (once, on the whole set).
        **cache_options: the other ``SharedCache`` options (``batch_size``, ``memory_budget``,
            ``spill_dir``, ``store_device``, ``progress``), for each rank's block.

    Attributes:
        local: this rank's ``SharedCache`` (its block of prompts only).
        rows: this rank's block, a slice of the prompt indices.
        inputs: the whole tokenised set.
    """

    def __init__(
        self,
        model: Any,
        prompts: Prompts | Tokenized,
        *,
        positions: Positions = "all",
        prepend_bos: bool | None = None,
        padding_side: Literal["left", "right"] = "right",
        **cache_options: Any,
    ) -> None:
        if hasattr(prompts, "clean_tokens") and hasattr(prompts, "lengths"):  # a mechinterp.tasks.Task
            check_task(model, prompts, "prompts")
            tokens, lengths = prompts.clean_tokens, prompts.lengths
            prompts = Tokenized(tokens, (torch.arange(tokens.shape[1])[None, :] < lengths[:, None]).long(), lengths, "right")
        self.inputs = prompts if isinstance(prompts, Tokenized) else tokenize(
            model, prompts, prepend_bos=prepend_bos, padding_side=padding_side)
        self.model = model
        self.ctx = sharding()
        n = len(self.inputs)
        self.rows = shard_rows(n, self.ctx) if self.ctx is not None else slice(0, n)
        mine = Tokenized(self.inputs.tokens[self.rows], self.inputs.attention_mask[self.rows],
                         self.inputs.lengths[self.rows], self.inputs.padding_side)
        if isinstance(positions, Tensor) and positions.is_floating_point():
            if positions.shape[0] != n:
                raise MechinterpError(f"Position weights must be [n_prompts, pos] = {tuple(self.inputs.tokens.shape)}, "
                                      f"got {tuple(positions.shape)}.")
            positions = positions[self.rows]
        self.positions = positions
        self.local = SharedCache(model, mine, positions=positions, **cache_options)

    @property
    def tokens(self) -> Tensor:
        return self.inputs.tokens

    @property
    def lengths(self) -> Tensor:
        return self.inputs.lengths

    def __len__(self) -> int:
        return len(self.inputs)

    def fetch(self, sites: SiteSpec | Iterable[SiteSpec], layers: int | Iterable[int] | None = None) -> list[str]:
        """Cache ``sites`` on this rank's block (every rank must call it: the reads that follow gather)."""
        return self.local.fetch(sites, layers)

    def get(self, site: SiteSpec, layer: int | None = None) -> Tensor:
        """One site's activations of the whole set ``[n_prompts, ...]`` (gathered from every rank, in order)."""
        names = resolve(self.model, site, layer)
        if len(names) != 1:
            raise MechinterpError(
                f"{site!r} names {len(names)} hooks (one per layer): pass a layer, or use cache.stack({site!r}).")
        return gather_rows(self._local(names[0]), self.ctx)

    def _local(self, name: str) -> Tensor:
        """This rank's block at hook ``name``; a failure on any rank fails every rank (no rank left waiting)."""
        box: list[Tensor] = []
        gather_results(lambda: box.append(self.local.get(name)), self.ctx)
        return box[0]

    def __getitem__(self, key: SiteSpec) -> Tensor:
        return self.get(key)

    def stack(self, site: str, layers: Iterable[int] | None = None) -> Tensor:
        """One site over several layers (default all): ``[layer, n_prompts, ...]``, gathered."""
        names = resolve_many(self.model, site, layers)
        gather_results(lambda: self.local.fetch(names), self.ctx)
        return torch.stack([gather_rows(self._local(n), self.ctx) for n in names])

    def close(self) -> None:
        """Remove this rank's spilled files."""
        self.local.close()

    def __enter__(self) -> ShardedCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        world = 1 if self.ctx is None else self.ctx.world_size
        return f"ShardedCache({len(self)} prompts over {world} rank(s), this rank rows {self.rows.start}:{self.rows.stop})"
