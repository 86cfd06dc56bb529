"""What every feature-level method checks first: the SAE fits the site, the latents exist.

Feature-level methods (patching, attribution, DLA, steering, dashboards) act on an SAE
spliced at its site with the error term kept, so the model's forward pass is unchanged
unless a latent is edited. Editing latent ``i`` from ``f_i`` to ``f_i'`` then changes the
site's output by exactly ``(f_i' - f_i) · W_dec[i]`` (the decoder is linear and the error
term is held), which is how these methods write their edits: one additive
:class:`~mechinterp.core.intervention.Intervention` at the SAE's output hook.

Example:
    >>> import mechinterp
    >>> from mechinterp.dictionary import SparseAutoencoder
    >>> from mechinterp.dictionary.latents import check_latents, sae_hooks
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> sae = SparseAutoencoder(model.cfg.d_model, 64, "topk", k=8, hook_name="blocks.0.hook_resid_post")
    >>> sae_hooks(model, sae)
    ('blocks.0.hook_resid_post', 'blocks.0.hook_resid_post')
    >>> check_latents(sae, [3, -1])
    [3, 63]
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mechinterp.dictionary.sae import SparseAutoencoder
from mechinterp.errors import MechinterpError, ShapeMismatchError, UnknownSiteError

__all__ = ["sae_hooks", "site_width", "check_latents", "check_sae", "as_sae_list", "latent_label"]

_D_MODEL = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "hook_embed",
            "hook_pos_embed", "hook_mlp_in", "hook_attn_in", "hook_normalized")
_D_MLP = ("mlp.hook_pre", "mlp.hook_post", "mlp.hook_pre_linear")


def site_width(model: Any, hook: str) -> int | None:
    """The last dimension of the activation at ``hook`` (``None`` when it cannot be told from the name)."""
    cfg = model.cfg
    if hook.endswith(_D_MODEL):
        return int(cfg.d_model)
    if hook.endswith(_D_MLP) and cfg.d_mlp is not None:
        return int(cfg.d_mlp)
    return None


def check_sae(sae: Any, name: str = "sae") -> SparseAutoencoder:
    """``sae`` if it is a :class:`SparseAutoencoder`, else a MechinterpError naming ``name``."""
    if not isinstance(sae, SparseAutoencoder):
        raise MechinterpError(
            f"{name} must be a mechinterp.dictionary.SparseAutoencoder, got {type(sae).__name__}; "
            "load an SAELens checkpoint with dictionary.load_sae(folder) or train one with dictionary.train_sae."
        )
    return sae


def sae_hooks(model: Any, sae: SparseAutoencoder, hook_name: str | None = None, name: str = "sae") -> tuple[str, str]:
    """``(input hook, output hook)`` of ``sae`` on ``model``, checked.

    The output hook is the input hook for an SAE and ``hook_name_out`` for a transcoder.

    Raises:
        MechinterpError: the SAE names no hook and none is given.
        UnknownSiteError: the model has no such hook.
        ShapeMismatchError: the SAE's width differs from the site's (``d_in`` / ``d_out``).
    """
    check_sae(sae, name)
    hook_in = hook_name or sae.hook_name
    if hook_in is None:
        raise MechinterpError(f"{name} names no hook: pass hook_name='blocks.L.hook_resid_post' (the site it was trained on).")
    hook_out = sae.hook_name_out if sae.is_transcoder and sae.hook_name_out else hook_in
    for hook in dict.fromkeys((hook_in, hook_out)):
        if hook not in model.hook_dict:
            raise UnknownSiteError(f"The model has no hook {hook!r} ({name} was trained on another model or site); "
                                   "pass hook_name= with a hook of this model.")
    for hook, width, what in ((hook_in, sae.d_in, "d_in"), (hook_out, sae.d_out, "d_out")):
        expected = site_width(model, hook)
        if expected is not None and expected != width:
            raise ShapeMismatchError(
                f"{name} has {what}={width}, but {hook!r} of this model has width {expected}: "
                f"pass an SAE trained on this model's {hook} (or the hook_name it was trained on)."
            )
    return hook_in, hook_out


def as_sae_list(saes: Any, name: str = "saes") -> list[SparseAutoencoder]:
    """One SAE or a sequence of them as a list (each checked, no two at the same output hook)."""
    items = [saes] if isinstance(saes, SparseAutoencoder) else list(saes) if isinstance(saes, (list, tuple)) else [saes]
    if not items:
        raise MechinterpError(f"{name}: give at least one SparseAutoencoder.")
    for sae in items:
        check_sae(sae, name)
    return items


def check_latents(sae: SparseAutoencoder, latents: Any, name: str = "latents") -> list[int]:
    """Latent indices as a list of ints in ``[0, d_sae)`` (negative ones count from the end).

    ``None`` means every latent; an int one latent; a sequence or 1-D integer tensor several.

    Raises:
        MechinterpError: a non-integer index, one outside the SAE's ``d_sae`` latents, or an empty selection.
    """
    n = sae.d_sae
    if latents is None:
        return list(range(n))
    if isinstance(latents, Tensor):
        if latents.is_floating_point() or latents.dtype == torch.bool or latents.ndim > 1:
            raise MechinterpError(f"{name} must be integer latent indices (a list or 1-D integer tensor), got a "
                                  f"{latents.dtype} tensor of shape {tuple(latents.shape)}.")
        items: Sequence[Any] = latents.flatten().tolist()
    elif isinstance(latents, numbers.Integral) and not isinstance(latents, bool):
        items = [latents]
    elif isinstance(latents, (list, tuple, range)):
        items = list(latents)
    else:
        raise MechinterpError(f"{name} must be a latent index, a list of them or None (all), got {latents!r}.")
    out = []
    for i in items:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise MechinterpError(f"{name}: latent indices are integers, got {i!r}.")
        if not -n <= int(i) < n:
            raise MechinterpError(f"{name}: latent {i} does not exist; the SAE has {n} latents (0..{n - 1}).")
        out.append(int(i) % n)
    if not out:
        raise MechinterpError(f"{name} is empty: select at least one latent (None selects all).")
    return out


def latent_label(sae: SparseAutoencoder, latent: int) -> str:
    """``"L3.resid_post/17"``-style label of one latent (hook shortened)."""
    hook = sae.hook_name or "sae"
    short = hook.replace("blocks.", "L").replace(".hook_", ".").replace("hook_", "")
    return f"{short}/{latent}"

