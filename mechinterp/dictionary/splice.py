"""Splicing an SAE (or transcoder) into the model's forward pass.

Inside ``with splice(model, sae):`` the activation at the SAE's hook is replaced by the
SAE's reconstruction — with the error term kept (``keep_error=True``, the default: the
forward pass is *exactly* the model's, and the latents are live nodes that edits and
gradients go through) or dropped (``keep_error=False``: the model runs on the
reconstruction, which is what "CE loss recovered" measures). The hooks go through
TransformerLens's ``model.hooks`` context manager and are removed on exit, also on error.

With the error kept the output is computed as ``x + (x̂' - x̂)`` where ``x̂`` is the
reconstruction and ``x̂'`` the reconstruction from the (optionally edited) latents, with
``x`` and ``x̂`` treated as constants for gradients (as SAELens's ``use_error_term`` does).
Unedited, ``x̂' - x̂`` is exactly zero, so the logits equal the clean run bit for bit; the
gradient of the output with respect to the latents is still ``W_dec``.

Example:
    >>> import mechinterp, torch
    >>> from mechinterp.dictionary import SparseAutoencoder, splice
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> sae = SparseAutoencoder(model.cfg.d_model, 64, "topk", k=8, hook_name="blocks.0.hook_resid_post")
    >>> with splice(model, sae) as state:
    ...     logits = model("the cat sat")
    >>> state.latents.shape[-1]
    64
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mechinterp.core.precision import synced_dtype
from mechinterp.dictionary.sae import SparseAutoencoder
from mechinterp.errors import MechinterpError, ShapeMismatchError, UnknownSiteError

__all__ = ["splice", "SpliceState"]

LatentEdit = Callable[[Tensor], Tensor]


@dataclass
class SpliceState:
    """What a spliced forward pass saw (the latest pass, overwritten by the next).

    Attributes:
        latents: ``[batch, pos, d_sae]`` latent activations (with grad when the pass has it).
        error: ``[batch, pos, d_out]`` the error term ``x - x̂`` (detached).
        n_calls: spliced forward passes run so far.
    """

    latents: Tensor | None = None
    error: Tensor | None = None
    n_calls: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def splice(
    model: Any,
    sae: SparseAutoencoder,
    hook_name: str | None = None,
    *,
    keep_error: bool = True,
    edit: LatentEdit | None = None,
    hook_name_out: str | None = None,
    skip_first: bool = False,
) -> Iterator[SpliceState]:
    """Run ``model`` with ``sae`` at its site while the block is open.

    Args:
        model: a ``HookedTransformer``.
        sae: the SAE or transcoder.
        hook_name: the hook to read (default ``sae.hook_name``).
        keep_error: add the error term back (exact forward) or drop it (reconstruction).
        edit: a function of the latents ``[batch, pos, d_sae]`` returning edited latents
            (e.g. zero one latent to ablate it); applied before decoding.
        hook_name_out: a transcoder's output hook (default ``sae.hook_name_out``).
        skip_first: leave position 0 as the model computes it (for an SAE trained without
            it: BOS or a first-token attention sink); its latents are still reported.

    Tokens above the SAE's ``max_input_norm`` (massive activations it was trained without) get no
    latents and pass through unchanged.

    Yields:
        A :class:`SpliceState` with the latest pass's latents and error term.

    Inside the block a model cast with ``model.half()`` runs as after ``model.to(torch.float16)``
    (:func:`~mechinterp.core.precision.synced_dtype`).
    """
    hook_in = hook_name or sae.hook_name
    hook_out = hook_name_out or sae.hook_name_out or hook_in
    if hook_in is None:
        raise MechinterpError("The SAE does not name its hook; pass hook_name='blocks.L.hook_resid_post' (for example).")
    for name in {hook_in, hook_out}:
        if name not in model.hook_dict:
            raise UnknownSiteError(f"The model has no hook {name!r}; the SAE was trained on another model or site.")
    state = SpliceState()

    def reconstruct(x_in: Tensor, out: Tensor) -> Tensor:
        if x_in.shape[-1] != sae.d_in or out.shape[-1] != sae.d_out:
            raise ShapeMismatchError(
                f"sae maps width {sae.d_in} -> {sae.d_out}, but the hook gives {x_in.shape[-1]} -> {out.shape[-1]}."
            )
        f = sae.encode(x_in)
        f_edit = edit(f) if edit is not None else f
        x_hat = sae.decode(f)
        x_hat_edit = sae.decode(f_edit) if f_edit is not f else x_hat
        state.latents, state.n_calls = f_edit, state.n_calls + 1
        state.error = (out.detach().to(x_hat.dtype) - x_hat.detach())
        if keep_error:
            new = out.detach() + (x_hat_edit - x_hat.detach()).to(out.dtype)
        else:
            new = x_hat_edit.to(out.dtype)
        if skip_first and new.shape[1] > 0:  # [batch, pos, d]: position 0 passes through
            new = torch.cat([out[:, :1].to(new.dtype), new[:, 1:]], dim=1)
        if sae.max_input_norm is not None:  # massive activations pass through
            new = torch.where(sae.in_range(x_in)[..., None], new, out.to(new.dtype))
        return new

    if hook_out == hook_in:
        def sae_hook(act: Tensor, hook: Any) -> Tensor:  # act: [batch, pos, d_in] or [batch, pos, head_index, d_head]
            vectors = sae.site_vectors(act)
            return sae.write_site(act, reconstruct(vectors, vectors))

        hooks = [(hook_in, sae_hook)]
    else:
        seen: dict[str, Tensor] = {}

        def read_hook(act: Tensor, hook: Any) -> None:  # act: [batch, pos, d_in]
            seen["x"] = act

        def write_hook(act: Tensor, hook: Any) -> Tensor:  # act: [batch, pos, d_out]
            if "x" not in seen:
                raise MechinterpError(f"{hook_out!r} fired before {hook_in!r}; a transcoder's input must come first.")
            return reconstruct(seen.pop("x"), act)

        hooks = [(hook_in, read_hook), (hook_out, write_hook)]
    with synced_dtype(model), model.hooks(fwd_hooks=hooks):
        yield state
