"""One way to say "intervene at a site": replace, add or scale by a value at chosen positions.

Every family that changes an activation builds on :class:`Intervention`: patching's
:class:`~mechinterp.patching.engine.Patch` is one (stacked many to a batch by the engine),
circuits' edge patching adds each receiver's edge corrections through one, probes'
:func:`~mechinterp.probes.run_with_direction` replaces the probed site by its projection or
steered value through one, and :func:`~mechinterp.zoo.diagnostics.ablate_heads_hooks`
replaces heads' ``z``. The one write is :func:`write`::

    where(mask, value, act)        mode="replace"
    where(mask, act + value, act)  mode="add"
    where(mask, act * value, act)  mode="scale"

``value`` is a tensor broadcast against the activation ``[batch, ...]`` (``[1, ...]`` for
every prompt), or a function ``act -> value`` for values that depend on the run itself
(a projection, edge corrections computed from this run's senders); it may return ``None``
for "nothing to write". The mask broadcasts against the activation too; a mask without the
batch dimension applies to every prompt.

:meth:`Intervention.at` builds the mask when the hook runs, from ``positions`` (the same
indices in every prompt, or one list per prompt: each prompt's own positions, as steering
at each prompt's last real token needs) and ``heads``. A position the pass does not reach
is skipped: generation with a KV cache sees one new position per pass, so a position of
the prompt writes in the first pass only. Per-prompt scales are values with a batch
dimension: ``scale.view(-1, 1, 1) * vector`` added with ``mode="add"`` is activation
addition (:mod:`mechinterp.lens.steering`).

Example:
    >>> import torch, mechinterp
    >>> from mechinterp.core.intervention import Intervention
    >>> model = mechinterp.load("zoo:attn-only-2l")
    >>> zero_l0h1 = Intervention.at("blocks.0.attn.hook_z", 0.0, heads=[1])
    >>> with model.hooks(fwd_hooks=[zero_l0h1.fwd_hook()]):
    ...     logits = model(torch.tensor([[1, 2, 3]]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mechinterp.core.sites import layer_of, position_dim
from mechinterp.errors import MechinterpError

__all__ = ["MODES", "Intervention", "write"]

MODES = ("replace", "add", "scale")
Value = Tensor | float | Callable[[Tensor], "Tensor | None"]


def write(act: Tensor, mask: Tensor | None, value: Tensor | None, mode: str) -> Tensor:
    """``act`` with ``value`` written where ``mask`` is true (everywhere when ``None``), as ``mode`` says.

    ``value`` is cast to ``act``'s dtype; ``None`` writes nothing. Out of place.
    """
    if value is None:
        return act
    value = value.to(act.dtype)
    new = value if mode == "replace" else act + value if mode == "add" else act * value
    if mask is None:
        return new.expand_as(act) if mode == "replace" else new
    return torch.where(mask, new, act)


@dataclass(frozen=True, eq=False)
class Intervention:
    """At ``hook`` (and where ``mask`` is true), replace / add / scale the activation by ``value``.

    Attributes:
        hook: a TL hook name.
        mask: boolean, broadcast against the activation (without the batch dimension it applies
            to every prompt); ``None``: everywhere. :meth:`at` builds it from positions and heads.
        value: a tensor ``[batch or 1, ...]`` (or a number), or a function ``act -> value``.
        mode: ``"replace"``, ``"add"`` or ``"scale"``.
        own: the value belongs to this intervention alone (differs per variant: the patching
            engine stacks such values instead of sharing one tensor).
    """

    hook: str
    mask: Tensor | None
    value: Value
    mode: str = "replace"
    own: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise MechinterpError(f"mode must be one of {MODES}, got {self.mode!r}.")

    @classmethod
    def at(
        cls, hook: str, value: Value, *, positions: Sequence[int] | Sequence[Sequence[int]] | Tensor | None = None,
        heads: Sequence[int] | None = None, mode: str = "replace",
    ) -> Intervention:
        """An intervention at ``positions`` (of the hook's position axis; the query axis of a pattern)
        and ``heads`` (of its head axis); the mask is sized from the activation when the hook runs.

        Args:
            hook: a TL hook name.
            value: as :class:`Intervention`'s (a tensor with a batch dimension gives each prompt its own).
            positions: ``None`` (every position); indices, the same in every prompt (negative from
                the end of the pass's sequence; a list or a ``[k]`` tensor); or one sequence of
                indices per prompt (a list of lists, or a ``[batch, k]`` integer tensor), which then
                has to match the batch. Indices outside the pass's sequence are skipped.
            heads: head indices, or ``None`` (every head).
            mode: ``"replace"``, ``"add"`` or ``"scale"``.
        """
        if positions is None and heads is None:
            return cls(hook, None, value, mode)
        per_prompt = None
        if isinstance(positions, Tensor):
            if positions.is_floating_point() or positions.ndim not in (1, 2):
                raise MechinterpError("positions must be integer indices: [k] (every prompt) or [batch, k] (per prompt).")
            if positions.ndim == 2:
                per_prompt = tuple(tuple(int(i) for i in row) for row in positions.tolist())
                positions = None
            else:
                positions = positions.tolist()
        elif positions is not None and any(isinstance(p, (Sequence, Tensor)) for p in positions):
            per_prompt = tuple(tuple(int(i) for i in (p if isinstance(p, (Sequence, Tensor)) else [p])) for p in positions)
            positions = None
        return _Selected(hook, None, value, mode, False, tuple(int(p) for p in positions) if positions is not None else None,
                         tuple(heads) if heads is not None else None, per_prompt)

    @property
    def layer(self) -> int | None:
        return layer_of(self.hook)

    def mask_for(self, act: Tensor) -> Tensor | None:
        """The mask for this activation (``None``: everywhere)."""
        return None if self.mask is None else self.mask.to(act.device)

    def value_for(self, act: Tensor) -> Tensor | None:
        """The value to write into ``act`` (calls a function value on ``act``)."""
        value = self.value(act) if callable(self.value) else self.value
        if value is None or isinstance(value, Tensor):
            return None if value is None else value.to(act.device)
        return torch.tensor(value, device=act.device)

    def apply(self, act: Tensor) -> Tensor:
        """The activation after this intervention (out of place)."""
        return write(act, self.mask_for(act), self.value_for(act), self.mode)

    def fwd_hook(self) -> tuple[str, Callable[[Tensor, Any], Tensor]]:
        """``(hook name, function)`` for ``model.hooks(fwd_hooks=[...])`` / ``run_with_hooks``."""
        return self.hook, lambda act, hook: self.apply(act)


@dataclass(frozen=True, eq=False)
class _Selected(Intervention):
    """An intervention whose mask is given by position and head indices (built per activation)."""

    positions: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None
    prompt_positions: tuple[tuple[int, ...], ...] | None = None  # one tuple of positions per prompt

    def mask_for(self, act: Tensor) -> Tensor:
        mask = torch.ones([1] * act.ndim, dtype=torch.bool, device=act.device)
        if self.positions is not None:
            mask = mask & _axis_mask(act, position_dim(self.hook), self.positions)
        if self.prompt_positions is not None:
            mask = mask & _prompt_mask(act, position_dim(self.hook), self.prompt_positions)
        if self.heads is not None:  # [batch, head_index, q, k] patterns, else [batch, pos, head_index, ...]
            mask = mask & _axis_mask(act, 1 if self.hook.endswith(("hook_pattern", "hook_attn_scores")) else 2, self.heads,
                                     strict=True)
        return mask


def _axis_mask(act: Tensor, dim: int, index: Sequence[int], strict: bool = False) -> Tensor:
    """Boolean, true at ``index`` along ``dim`` of ``act``, size 1 along every other dimension.

    Indices outside the axis are skipped (positions a pass does not reach), or raise with ``strict`` (heads)."""
    shape = [1] * act.ndim
    shape[dim] = act.shape[dim]
    hit = torch.zeros(act.shape[dim], dtype=torch.bool, device=act.device)
    kept = _in_range(index, act.shape[dim])
    if strict and len(kept) != len(index):
        raise MechinterpError(f"Index {sorted(set(index) - set(kept))} is outside this activation's axis of size "
                              f"{act.shape[dim]} (heads run from 0 to {act.shape[dim] - 1}).")
    hit[kept] = True
    return hit.view(shape)


def _in_range(index: Sequence[int], size: int) -> list[int]:
    """The indices a sequence of ``size`` has (negative ones from its end); others are skipped."""
    return [i for i in index if -size <= i < size]


def _prompt_mask(act: Tensor, dim: int, per_prompt: Sequence[Sequence[int]]) -> Tensor:
    """Boolean ``[batch, ..., pos, ...]`` (size 1 elsewhere): true at each prompt's own positions along ``dim``."""
    if len(per_prompt) != act.shape[0]:
        raise MechinterpError(f"Per-prompt positions are given for {len(per_prompt)} prompts, but the pass at this hook "
                              f"has {act.shape[0]}; give one entry per prompt of the batch.")
    shape = [1] * act.ndim
    shape[0], shape[dim] = act.shape[0], act.shape[dim]
    hit = torch.zeros(act.shape[0], act.shape[dim], dtype=torch.bool)
    for row, index in enumerate(per_prompt):
        hit[row, _in_range(index, act.shape[dim])] = True
    return hit.to(act.device).view(shape)
