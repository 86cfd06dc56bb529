"""Site names: short, readable names for TransformerLens hook points.

A *site* is a place in the model whose activation a method reads or patches. Methods
accept either a full TL hook name (``"blocks.3.hook_resid_post"``) or a short name plus a
layer (``("resid_post", 3)``); :func:`resolve` turns both into hook names and raises an
:class:`~mechinterp.errors.UnknownSiteError` listing the valid names on a typo.

Shapes of the common sites (TL dimension names)::

    resid_pre/mid/post, attn_out, mlp_out, embed, pos_embed   [batch, pos, d_model]
    q, k, v, z                                                [batch, pos, head_index, d_head]
    result                                                    [batch, pos, head_index, d_model]
    pattern, attn_scores                                      [batch, head_index, query_pos, key_pos]
    mlp_pre, mlp_post                                         [batch, pos, d_mlp]
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Any

from mechinterp.errors import UnknownSiteError

__all__ = ["LAYER_SITES", "GLOBAL_SITES", "SiteSpec", "resolve", "resolve_many", "layer_of", "position_dim", "needs_flags"]

#: short name -> hook-name template, for sites that exist once per layer.
LAYER_SITES: dict[str, str] = {
    "resid_pre": "blocks.{l}.hook_resid_pre",
    "resid_mid": "blocks.{l}.hook_resid_mid",
    "resid_post": "blocks.{l}.hook_resid_post",
    "attn_out": "blocks.{l}.hook_attn_out",
    "mlp_out": "blocks.{l}.hook_mlp_out",
    "attn_in": "blocks.{l}.hook_attn_in",
    "mlp_in": "blocks.{l}.hook_mlp_in",
    "q_input": "blocks.{l}.hook_q_input",
    "k_input": "blocks.{l}.hook_k_input",
    "v_input": "blocks.{l}.hook_v_input",
    "q": "blocks.{l}.attn.hook_q",
    "k": "blocks.{l}.attn.hook_k",
    "v": "blocks.{l}.attn.hook_v",
    "z": "blocks.{l}.attn.hook_z",
    "result": "blocks.{l}.attn.hook_result",
    "pattern": "blocks.{l}.attn.hook_pattern",
    "attn_scores": "blocks.{l}.attn.hook_attn_scores",
    "rot_q": "blocks.{l}.attn.hook_rot_q",
    "rot_k": "blocks.{l}.attn.hook_rot_k",
    "mlp_pre": "blocks.{l}.mlp.hook_pre",
    "mlp_post": "blocks.{l}.mlp.hook_post",
    "ln1_scale": "blocks.{l}.ln1.hook_scale",
    "ln2_scale": "blocks.{l}.ln2.hook_scale",
}
_ALIASES = {"pre": "mlp_pre", "post": "mlp_post", "scores": "attn_scores", "resid": "resid_post", "attn": "pattern"}

#: short name -> hook name, for sites that exist once per model.
GLOBAL_SITES: dict[str, str] = {
    "embed": "hook_embed",
    "pos_embed": "hook_pos_embed",
    "ln_final": "ln_final.hook_normalized",
    "ln_final_scale": "ln_final.hook_scale",
}

# Hooks that only fire when a model flag is on: hook suffix -> setter method name.
_FLAG_HOOKS = {
    "attn.hook_result": "set_use_attn_result",
    "hook_q_input": "set_use_split_qkv_input",
    "hook_k_input": "set_use_split_qkv_input",
    "hook_v_input": "set_use_split_qkv_input",
    "hook_attn_in": "set_use_attn_in",
    "hook_mlp_in": "set_use_hook_mlp_in",
}
_LAYER_RE = re.compile(r"^blocks\.(\d+)\.")

SiteSpec = str | tuple[str, int] | tuple[str, int | None]


def _unknown(model: Any, name: str, why: str = "") -> UnknownSiteError:
    short_names = sorted({*LAYER_SITES, *GLOBAL_SITES, *_ALIASES})
    close = difflib.get_close_matches(name, [*short_names, *model.hook_dict], n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return UnknownSiteError(
        f"Unknown site {name!r}{why}.{hint} Valid short names: {', '.join(short_names)}; "
        f"or a full hook name from model.hook_dict (e.g. 'blocks.0.hook_resid_post')."
    )


def resolve(model: Any, site: SiteSpec, layer: int | None = None) -> list[str]:
    """Turn a site into the TransformerLens hook names it denotes.

    Args:
        model: the ``HookedTransformer``.
        site: a full hook name, a short name (``"resid_post"``), or ``(short, layer)``.
        layer: the layer for a short per-layer name; ``None`` means every layer.
            Negative layers count from the end (``-1`` is the last layer).

    Returns:
        Hook names, in layer order.

    Raises:
        UnknownSiteError: an unknown name, or a layer outside ``0..n_layers-1``; the
            message lists the valid names and suggests the closest.

    Example:
        >>> resolve(model, "resid_post", 1)  # doctest: +SKIP
        ['blocks.1.hook_resid_post']
    """
    if isinstance(site, tuple):
        if len(site) != 2:
            raise _unknown(model, str(site), " (a tuple site must be (name, layer))")
        site, layer = site
    if not isinstance(site, str):
        raise _unknown(model, repr(site), " (sites are strings or (name, layer) tuples)")
    if site in model.hook_dict:
        if layer is not None:
            raise _unknown(model, site, f" with layer={layer}: a full hook name already names its layer")
        return [site]
    short = _ALIASES.get(site, site)
    if short in GLOBAL_SITES:
        name = GLOBAL_SITES[short]
        if name not in model.hook_dict:
            raise _unknown(model, site, " (this model has no such hook)")
        return [name]
    if short not in LAYER_SITES:
        raise _unknown(model, site)
    n_layers = model.cfg.n_layers
    if layer is None:
        layers: Sequence[int] = range(n_layers)
    else:
        if not -n_layers <= int(layer) < n_layers:
            raise UnknownSiteError(f"Layer {layer} is out of range for {site!r}: the model has layers 0..{n_layers - 1}.")
        layers = [int(layer) % n_layers]
    names = [LAYER_SITES[short].format(l=l) for l in layers]
    missing = [n for n in names if n not in model.hook_dict]
    if missing:
        raise _unknown(model, site, f" (this model has no hook {missing[0]!r}; e.g. attention-only models have no MLP)")
    return names


def resolve_many(model: Any, sites: SiteSpec | Iterable[SiteSpec], layers: int | Iterable[int] | None = None) -> list[str]:
    """Resolve several sites (and optionally several layers) to unique hook names, in order."""
    if isinstance(sites, (str, tuple)):
        sites = [sites]
    layer_list: list[int | None] = [None] if layers is None else ([layers] if isinstance(layers, int) else list(layers))
    out: list[str] = []
    for site in sites:
        for layer in layer_list:
            is_global = isinstance(site, str) and (site in model.hook_dict or _ALIASES.get(site, site) in GLOBAL_SITES)
            for name in resolve(model, site, None if (is_global or isinstance(site, tuple)) else layer):
                if name not in out:
                    out.append(name)
    return out


def layer_of(hook_name: str) -> int | None:
    """The block index of a hook name, or ``None`` for embeddings and final-LN hooks."""
    match = _LAYER_RE.match(hook_name)
    return int(match.group(1)) if match else None


def position_dim(hook_name: str) -> int:
    """The dimension that indexes (query) positions in the activation at ``hook_name``."""
    return 2 if hook_name.endswith(("hook_pattern", "hook_attn_scores")) else 1


def needs_flags(hook_names: Iterable[str]) -> set[str]:
    """Names of the ``HookedTransformer.set_*`` methods that must be on for these hooks to fire."""
    return {setter for name in hook_names for suffix, setter in _FLAG_HOOKS.items() if name.endswith(suffix)}
