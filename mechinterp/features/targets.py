"""What to maximise: an activation target maps one hook's activation to a score per token.

A target names one hook and a reduction ``act [batch, pos, ...] -> [batch, pos]``:

* :func:`neuron` — one MLP neuron (``mlp_post``, or ``mlp_pre`` for the pre-activation);
* :func:`dimension` — one coordinate of any ``[batch, pos, d]`` site (e.g. a residual
  dimension a compiled tracr program defines);
* :func:`direction` — the projection on a direction (a probe's weight vector);
* :func:`head_norm` — the norm of one head's output ``z_h @ W_O[h]`` (read from ``hook_z``);
* :func:`site_reduction` — any reduction of any site.

Example:
    >>> import mechinterp
    >>> from mechinterp.features import neuron
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> neuron(model, layer=1, index=7).hook
    'blocks.1.mlp.hook_post'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.sites import layer_of, resolve
from mechinterp.errors import MechinterpError, ShapeMismatchError
from mechinterp.core.validation import check_count, check_finite

__all__ = ["ActivationTarget", "neuron", "dimension", "direction", "head_norm", "site_reduction"]


@dataclass(frozen=True)
class ActivationTarget:
    """A hook and a per-token reduction of its activation.

    Attributes:
        hook: the TransformerLens hook name.
        reduce: ``act [batch, pos, ...] -> [batch, pos]``.
        label: a readable name (``"L1 neuron 7"``).
    """

    hook: str
    reduce: Callable[[Tensor], Tensor]
    label: str

    @property
    def layer(self) -> int | None:
        return layer_of(self.hook)

    def __call__(self, act: Tensor) -> Float[Tensor, "batch pos"]:
        out = self.reduce(act)
        if out.ndim != 2 or out.shape[:2] != act.shape[:2]:
            raise ShapeMismatchError(f"Target {self.label!r} must reduce {tuple(act.shape)} to [batch, pos], got {tuple(out.shape)}.")
        return out


def _hook(model: Any, site: str, layer: int | None) -> str:
    if layer is not None:
        check_count(layer, "layer", minimum=-model.cfg.n_layers)
    names = resolve(model, site, layer)
    if len(names) != 1:
        raise MechinterpError(f"{site!r} names {len(names)} hooks: pass a layer.")
    if names[0].endswith(("hook_pattern", "hook_attn_scores")):
        raise MechinterpError("Attention patterns have no per-token layout [batch, pos, ...]; use site_reduction on z or result.")
    return names[0]


def _index(index: int, size: int, what: str, name: str = "index") -> int:
    check_count(index, name, minimum=-size, hint=f"({what} index: an integer.)")
    if not -size <= index < size:
        raise MechinterpError(f"{name}={index}: {what} index out of range: the site has {size}.")
    return index % size


def neuron(model: Any, layer: int, index: int, site: str = "mlp_post") -> ActivationTarget:
    """One MLP neuron's activation (``site="mlp_pre"`` for its pre-activation)."""
    if model.cfg.attn_only:
        raise MechinterpError("This model has no MLPs (attn_only); use dimension or head_norm.")
    i = _index(index, model.cfg.d_mlp, "Neuron")
    return ActivationTarget(_hook(model, site, layer), lambda act: act[..., i], f"L{layer} neuron {i}")


def dimension(model: Any, site: str, layer: int | None, index: int) -> ActivationTarget:
    """Coordinate ``index`` of a ``[batch, pos, d]`` site (e.g. a residual dimension)."""
    check_count(index, "index", minimum=-(2**62), hint="(a coordinate of the site: an integer.)")
    hook = _hook(model, site, layer)
    return ActivationTarget(hook, lambda act: act[..., index], f"{hook}[{index}]")


def direction(model: Any, site: str, layer: int | None, vector: Tensor, label: str = "direction") -> ActivationTarget:
    """The projection ``act · vector`` at a ``[batch, pos, d]`` site (a probe direction)."""
    check_finite(torch.as_tensor(vector), "vector")
    hook = _hook(model, site, layer)
    vec = torch.as_tensor(vector).detach().float().flatten()
    if not bool(torch.isfinite(vec).all()) or float(vec.norm()) == 0:
        raise MechinterpError("The direction must be finite and non-zero.")

    def reduce(act: Tensor) -> Tensor:
        if act.shape[-1] != vec.shape[0]:
            raise ShapeMismatchError(f"The direction has {vec.shape[0]} entries; {hook} has {act.shape[-1]}.")
        return act.float() @ vec.to(act.device)

    return ActivationTarget(hook, reduce, f"{label} at {hook}")


def head_norm(model: Any, layer: int, head: int) -> ActivationTarget:
    """The L2 norm of head ``head``'s output ``z_h @ W_O[layer, h]`` (its write into the residual)."""
    h = _index(head, model.cfg.n_heads, "Head", "head")
    w_o = model.blocks[layer].attn.W_O[h].detach()  # [d_head, d_model]

    def reduce(act: Tensor) -> Tensor:  # z [batch, pos, head, d_head]
        return (act[..., h, :].float() @ w_o.float().to(act.device)).norm(dim=-1)

    return ActivationTarget(_hook(model, "z", layer), reduce, f"L{layer}H{h} output norm")


def site_reduction(model: Any, site: str, layer: int | None, reduce: Callable[[Tensor], Tensor], label: str = "") -> ActivationTarget:
    """Any reduction ``act [batch, pos, ...] -> [batch, pos]`` of any per-token site."""
    hook = _hook(model, site, layer)
    return ActivationTarget(hook, reduce, label or f"reduction of {hook}")
