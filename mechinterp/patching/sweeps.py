"""Sweeps: which patched runs a ``(site, by)`` request means, with their axes and labels.

Sites and the axes they can be swept over (the same sweeps as TransformerLens's
``patching.get_act_patch_*``; output dimensions follow the order given in ``by``)::

    resid_pre resid_mid resid_post attn_out mlp_out   [batch, pos, d_model]       layer, pos
    z q k v result                                    [batch, pos, head, d]       layer, pos, head
    pattern                                           [batch, head, dest, src]    layer, head, dest_pos, src_pos

``by`` may be a tuple of axis names or a shorthand: ``"layer"`` (the whole site of a layer),
``"position"`` (layer x pos), ``"head"`` (layer x head, all positions), ``"head_position"``
(layer x pos x head; for ``pattern`` layer x head x dest_pos, as TL), ``"dest_src"``
(pattern only: layer x head x dest_pos x src_pos).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mechinterp.core.sites import resolve
from mechinterp.errors import MechinterpError, UnknownSiteError
from mechinterp.patching.engine import Patch, Variant
from mechinterp.patching.inputs import as_list

__all__ = ["Sweep", "make_sweep", "SITE_KINDS", "site_kind", "site_heads"]

SITE_KINDS: dict[str, str] = {
    **{s: "vector" for s in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")},
    **{s: "head" for s in ("z", "q", "k", "v", "result")},
    "pattern": "pattern",
}
_AXES = {"vector": ("layer", "pos"), "head": ("layer", "pos", "head"), "pattern": ("layer", "head", "dest_pos", "src_pos")}
_SHORTHANDS = {
    "vector": {"layer": ("layer",), "position": ("layer", "pos"), "pos": ("layer", "pos")},
    "head": {
        "layer": ("layer",),
        "position": ("layer", "pos"),
        "pos": ("layer", "pos"),
        "head": ("layer", "head"),
        "head_position": ("layer", "pos", "head"),
    },
    "pattern": {
        "layer": ("layer",),
        "position": ("layer", "dest_pos"),
        "pos": ("layer", "dest_pos"),
        "head": ("layer", "head"),
        "head_position": ("layer", "head", "dest_pos"),
        "dest_src": ("layer", "head", "dest_pos", "src_pos"),
    },
}


def site_kind(site: str) -> str:
    """``"vector"``, ``"head"`` or ``"pattern"``; raises :class:`UnknownSiteError` otherwise."""
    if site not in SITE_KINDS:
        raise UnknownSiteError(
            f"Unknown patching site {site!r}. Patchable sites: {', '.join(SITE_KINDS)} "
            "(per-layer residual/attention/MLP outputs, per-head q/k/v/z/result, attention pattern)."
        )
    return SITE_KINDS[site]


def site_heads(model: Any, site: str) -> int:
    """How many heads the activation of ``site`` has: ``k`` / ``v`` of a grouped-query model have
    one per key/value head (``n_key_value_heads``), unless it was loaded with
    ``ungroup_grouped_query_attention=True``."""
    cfg = model.cfg
    grouped = cfg.n_key_value_heads is not None and not getattr(cfg, "ungroup_grouped_query_attention", False)
    return cfg.n_key_value_heads if site in ("k", "v") and grouped else cfg.n_heads


def _axes(site: str, by: str | Sequence[str]) -> tuple[str, ...]:
    kind = site_kind(site)
    if isinstance(by, str):
        if by not in _SHORTHANDS[kind]:
            raise MechinterpError(f"by={by!r} is not available for site {site!r}: use one of {sorted(_SHORTHANDS[kind])} or a tuple of axes from {_AXES[kind]}.")
        return _SHORTHANDS[kind][by]
    axes = tuple("dest_pos" if (kind == "pattern" and a == "pos") else a for a in by)
    if "head_index" in axes:
        axes = tuple("head" if a == "head_index" else a for a in axes)
    bad = [a for a in axes if a not in _AXES[kind]]
    if bad or "layer" not in axes or len(set(axes)) != len(axes):
        raise MechinterpError(f"by={tuple(by)!r} is not valid for site {site!r}: give distinct axes from {_AXES[kind]}, including 'layer'.")
    return axes


@dataclass
class Sweep:
    """One site swept over some axes.

    Attributes:
        site: the short site name.
        axes: the swept axes, in output order.
        ranges: the indices swept along each axis.
        labels: string labels along each axis.
        hooks: the hook name per swept layer.
    """

    site: str
    axes: tuple[str, ...]
    ranges: dict[str, list[int]]
    labels: dict[str, list[str]]
    hooks: dict[int, str]
    n_pos: int
    n_heads: int

    @property
    def kind(self) -> str:
        return SITE_KINDS[self.site]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(self.ranges[a]) for a in self.axes)

    def _mask(self, index: dict[str, int]) -> Tensor:
        n, h = self.n_pos, self.n_heads
        if self.kind == "vector":
            mask = torch.zeros(n, 1, dtype=torch.bool)
            mask[index["pos"] if "pos" in index else slice(None)] = True
        elif self.kind == "head":
            mask = torch.zeros(n, h, 1, dtype=torch.bool)
            mask[index["pos"] if "pos" in index else slice(None), index["head"] if "head" in index else slice(None)] = True
        else:
            mask = torch.zeros(h, n, n if "src_pos" in self.axes else 1, dtype=torch.bool)
            mask[
                index["head"] if "head" in index else slice(None),
                index["dest_pos"] if "dest_pos" in index else slice(None),
                index["src_pos"] if "src_pos" in index else slice(None),
            ] = True
        return mask

    def variants(self, sources: dict[str, Tensor]) -> list[Variant]:
        """One variant per grid point, in C order over :attr:`axes`."""
        out: list[Variant] = []
        for combo in itertools.product(*[self.ranges[a] for a in self.axes]):
            index = dict(zip(self.axes, combo))
            hook = self.hooks[index["layer"]]
            out.append((Patch(hook, self._mask(index), sources[hook]),))
        return out


def make_sweep(
    model: Any,
    site: str,
    by: str | Sequence[str],
    str_tokens: Sequence[str],
    *,
    layers: int | Sequence[int] | None = None,
    positions: int | Sequence[int] | None = None,
    heads: int | Sequence[int] | None = None,
) -> Sweep:
    """Build the sweep for ``site`` by ``by`` on prompts of ``len(str_tokens)`` positions."""
    axes = _axes(site, by)
    n_pos = len(str_tokens)
    n_heads = site_heads(model, site)
    layer_list = as_list(layers, model.cfg.n_layers)
    hooks = {l: resolve(model, site, l)[0] for l in layer_list}
    pos_list = as_list(positions, n_pos)
    ranges = {"layer": layer_list, "pos": pos_list, "dest_pos": pos_list, "src_pos": list(range(n_pos)), "head": as_list(heads, n_heads)}
    pos_labels = [f"{i}:{t}" for i, t in enumerate(str_tokens)]
    labels = {
        "layer": [f"L{l}" for l in layer_list],
        "pos": [pos_labels[p] for p in pos_list],
        "dest_pos": [pos_labels[p] for p in pos_list],
        "src_pos": pos_labels,
        "head": [f"H{h}" for h in ranges["head"]],
    }
    return Sweep(site, axes, {a: ranges[a] for a in axes}, {a: labels[a] for a in axes}, hooks, n_pos, n_heads)
