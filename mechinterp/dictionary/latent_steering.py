"""Steering with a latent: add its decoder direction, or clamp / scale its activation.

Three ways to push a model along an SAE latent ``i`` (Templeton et al. 2024 clamp; Turner
et al. 2023 add), each one :class:`~mechinterp.core.intervention.Intervention` at the SAE's
output hook, at chosen positions:

* ``mode="add"``: add ``value · W_dec[i]`` (activation addition along the latent's direction;
  :func:`latent_steering_vector` gives the same as a :class:`mechinterp.lens.SteeringVector`
  for :func:`~mechinterp.lens.steering_sweep` and :func:`~mechinterp.lens.steered_generate`);
* ``mode="clamp"``: set the latent to ``value`` with the SAE spliced and its error term kept,
  i.e. add ``(value - f_i(x)) · W_dec[i]``;
* ``mode="scale"``: multiply the latent by ``value`` (``0`` ablates it), i.e. add
  ``(value - 1) · f_i(x) · W_dec[i]``.

Clamp and scale read the latent from the activation they edit, so they need an SAE (input
hook = output hook), not a transcoder.

Example:
    >>> import mechinterp
    >>> from mechinterp.dictionary import SparseAutoencoder, steer_latent
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> sae = SparseAutoencoder(model.cfg.d_model, 64, "topk", k=8, hook_name="blocks.1.hook_resid_post")
    >>> with steer_latent(model, sae, 3, 10.0, mode="clamp"):
    ...     logits = model("the cat sat")
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from torch import Tensor

from mechinterp.core.intervention import Intervention
from mechinterp.core.precision import synced_dtype
from mechinterp.core.validation import check_finite
from mechinterp.dictionary.latents import check_latents, latent_label, sae_hooks
from mechinterp.dictionary.sae import SparseAutoencoder
from mechinterp.errors import MechinterpError
from mechinterp.lens import SteeringVector

__all__ = ["STEERING_MODES", "latent_intervention", "latent_steering_vector", "steer_latent"]

STEERING_MODES = ("add", "clamp", "scale")


def _one_latent(sae: SparseAutoencoder, latent: Any) -> int:
    if isinstance(latent, (list, tuple)) or (isinstance(latent, Tensor) and latent.numel() != 1):
        raise MechinterpError(f"latent must be one latent index, got {latent!r}; steer several with several interventions.")
    return check_latents(sae, int(latent) if isinstance(latent, Tensor) and not latent.is_floating_point() else latent, "latent")[0]


def latent_steering_vector(model: Any, sae: SparseAutoencoder, latent: int, *, hook_name: str | None = None) -> SteeringVector:
    """Latent ``latent``'s decoder direction as a :class:`mechinterp.lens.SteeringVector` at the SAE's output hook.

    Use it with :func:`mechinterp.lens.steering_hooks`, :func:`~mechinterp.lens.steered_generate` or
    :func:`~mechinterp.lens.steering_sweep` (residual-width sites only).
    """
    _, hook_out = sae_hooks(model, sae, hook_name)
    i = _one_latent(sae, latent)
    if sae.d_out != model.cfg.d_model:
        raise MechinterpError(f"The SAE writes width {sae.d_out}, not d_model ({model.cfg.d_model}): lens steering vectors are "
                              "residual-width; use latent_intervention / steer_latent instead.")
    return SteeringVector(sae.W_dec.detach()[i].float().cpu(), hook_out, f"latent {latent_label(sae, i)}")


def latent_intervention(
    model: Any,
    sae: SparseAutoencoder,
    latent: int,
    value: float,
    *,
    mode: Literal["add", "clamp", "scale"] = "add",
    positions: Sequence[int] | None = None,
    hook_name: str | None = None,
) -> Intervention:
    """The :class:`~mechinterp.core.intervention.Intervention` that steers with one latent (see the module).

    Args:
        model: a ``HookedTransformer``.
        sae: the SAE (a transcoder for ``mode="add"`` only).
        latent: the latent's index.
        value: the amount added (``"add"``), the clamped activation (``"clamp"``) or the factor (``"scale"``).
        mode: ``"add"``, ``"clamp"`` or ``"scale"``.
        positions: positions to steer (``None``: every position).
        hook_name: the SAE's hook when it does not name one.
    """
    hook_in, hook_out = sae_hooks(model, sae, hook_name)
    i = _one_latent(sae, latent)
    check_finite(value, "value")
    if mode not in STEERING_MODES:
        raise MechinterpError(f"mode must be one of {STEERING_MODES}, got {mode!r}.")
    if mode != "add" and hook_in != hook_out:
        raise MechinterpError(f"mode={mode!r} reads the latent from the activation it edits: it needs an SAE, not a transcoder "
                              f"({hook_in!r} -> {hook_out!r}); use mode='add'.")
    w = sae.W_dec.detach()[i]  # [d_out]
    v = float(value)

    def delta(act: Tensor) -> Tensor:  # act [batch, pos, d_out] -> what to add
        if mode == "add":
            return v * w.to(act.device, act.dtype)
        f_i = sae.encode(act)[..., i : i + 1]  # [batch, pos, 1]
        change = (v - f_i) if mode == "clamp" else (v - 1.0) * f_i
        return (change * w).to(act.dtype)

    return Intervention.at(hook_out, delta, positions=positions, mode="add")


@contextmanager
def steer_latent(
    model: Any,
    sae: SparseAutoencoder,
    latent: int,
    value: float,
    *,
    mode: Literal["add", "clamp", "scale"] = "add",
    positions: Sequence[int] | None = None,
    hook_name: str | None = None,
) -> Iterator[Any]:
    """Run the model steered by one latent inside the ``with`` block (hooks removed on exit, also on error).

    Arguments as :func:`latent_intervention`; yields the model. Inside the block a model cast with
    ``model.half()`` runs as after ``model.to(torch.float16)`` (:func:`~mechinterp.core.precision.synced_dtype`).
    """
    edit = latent_intervention(model, sae, latent, value, mode=mode, positions=positions, hook_name=hook_name)
    with synced_dtype(model), model.hooks(fwd_hooks=[edit.fwd_hook()]):
        yield model
