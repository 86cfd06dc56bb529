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
        cls, hook: str, value: Value, *, positions: Sequence[int] | None = None, heads: Sequence[int] | None = None,
        mode: str = "replace",
    ) -> Intervention:
        """An intervention at ``positions`` (of the hook's position axis; the query axis of a pattern)
        and ``heads`` (of its head axis); the mask is sized from the activation when the hook runs."""
        if positions is None and heads is None:
            return cls(hook, None, value, mode)
        return _Selected(hook, None, value, mode, False, tuple(positions) if positions is not None else None,
                         tuple(heads) if heads is not None else None)

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

    def mask_for(self, act: Tensor) -> Tensor:
        mask = torch.ones([1] * act.ndim, dtype=torch.bool, device=act.device)
        if self.positions is not None:
            mask = mask & _axis_mask(act, position_dim(self.hook), self.positions)
        if self.heads is not None:  # [batch, head_index, q, k] patterns, else [batch, pos, head_index, ...]
            mask = mask & _axis_mask(act, 1 if self.hook.endswith(("hook_pattern", "hook_attn_scores")) else 2, self.heads)
        return mask


def _axis_mask(act: Tensor, dim: int, index: Sequence[int]) -> Tensor:
    """Boolean, true at ``index`` along ``dim`` of ``act``, size 1 along every other dimension."""
    shape = [1] * act.ndim
    shape[dim] = act.shape[dim]
    hit = torch.zeros(act.shape[dim], dtype=torch.bool, device=act.device)
    hit[list(index)] = True
    return hit.view(shape)
