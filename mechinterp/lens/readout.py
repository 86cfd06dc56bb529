"""Reading the residual stream through the model's own output head.

Every method of this family decodes a residual vector ``x`` the way the final layer does:
the final norm, then the unembedding. Two forms of the final norm are used:

* **live** (:func:`decode`): ``ln_final(x)`` recomputes the norm's scale from ``x`` itself.
  This is the logit lens: each layer's residual read as if it were the last.
* **frozen** (:func:`norm_linear`): the scale is taken from the clean run's final residual
  (``ln_final.hook_scale``), so the norm becomes a linear map of ``x``. The final residual
  is a sum of component outputs, so under a frozen scale the logit is the sum of each
  component's decoded output plus the constant biases: direct logit attribution.

Normalisations handled: ``LN`` and ``LNPre`` (centred, divided by the scale, ``LN`` times
its weight plus its bias), ``RMS`` and ``RMSPre`` (divided by the scale, ``RMS`` times its
weight) and ``None``. A logit soft cap (Gemma 2) is not linear; :func:`check_linear_head`
raises for it.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.metrics import unembed
from mechinterp.core.cache import SharedCache
from mechinterp.core.tokens import answer_tokens
from mechinterp.errors import MechinterpError, ShapeMismatchError

__all__ = ["decode", "norm_linear", "norm_bias", "check_linear_head", "as_cache", "residual_rows", "answer_ids"]

_CENTRED = ("LN", "LNPre")
_WEIGHTED = ("LN", "RMS")


def decode(model: Any, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
    """Logits of residual vectors through the live final norm and the unembedding (the logit lens)."""
    shape = resid.shape
    cap = getattr(model.cfg, "output_logits_soft_cap", -1.0)
    if cap is not None and cap > 0:
        return unembed(model, resid.reshape(-1, 1, shape[-1])).reshape(*shape[:-1], -1)
    flat = resid.reshape(-1, shape[-1])
    if model.cfg.normalization_type is not None:
        flat = model.ln_final(flat)
    # one fused product plus bias (core.metrics.unembed's route, without a [n, d_vocab] temporary for the bias)
    return torch.addmm(model.unembed.b_U, flat, model.unembed.W_U).reshape(*shape[:-1], -1)


def norm_linear(
    model: Any, x: Float[Tensor, "... d_model"], scale: Float[Tensor, "... 1"] | None
) -> Float[Tensor, "... d_model"]:
    """The final norm with its scale frozen (a linear map of ``x``), without its bias, in ``x``'s dtype.

    Args:
        model: a ``HookedTransformer``.
        x: component outputs in the residual basis; the leading dimensions broadcast
            against ``scale``.
        scale: ``ln_final.hook_scale`` of the clean run (``[..., 1]``); ignored for a
            model without a final norm.
    """
    kind = model.cfg.normalization_type
    if kind is None:
        return x
    if scale is None:
        raise MechinterpError("norm_linear needs the clean run's ln_final scale for a model with a final norm.")
    if kind in _CENTRED:
        x = x - x.mean(-1, keepdim=True)
    elif kind not in ("RMS", "RMSPre"):
        raise MechinterpError(f"Unsupported normalization_type {kind!r} for the final norm.")
    x = x / scale
    if kind in _WEIGHTED:
        x = x * model.ln_final.w.to(x.dtype)  # x's dtype, also when the model's weights are in another
    return x


def norm_bias(model: Any) -> Float[Tensor, " d_model"]:
    """The final norm's additive bias (zero unless ``normalization_type == "LN"``)."""
    if model.cfg.normalization_type == "LN":
        return model.ln_final.b.detach()
    return torch.zeros(model.cfg.d_model, device=model.W_U.device, dtype=model.W_U.dtype)


def check_linear_head(model: Any) -> None:
    """Raise for output heads that are not linear after the norm (a logit soft cap)."""
    cap = getattr(model.cfg, "output_logits_soft_cap", -1.0)
    if cap is not None and cap > 0:
        raise MechinterpError(
            f"This model caps its logits (output_logits_soft_cap={cap}): the logit is not a sum of component "
            "contributions. Attribute the pre-cap logit instead (set model.cfg.output_logits_soft_cap = -1 on a copy)."
        )


def as_cache(model: Any, inputs: Any, positions: Any = "last", batch_size: int = 32, **kwargs: Any) -> SharedCache:
    """``inputs`` as a :class:`SharedCache`: a cache of this model is used as it is, prompts get a new one."""
    if isinstance(inputs, SharedCache):
        if inputs.model is not model:
            raise MechinterpError("The SharedCache was built for another model: build one for this model.")
        return inputs
    return SharedCache(model, inputs, positions=positions, batch_size=batch_size, **kwargs)


def residual_rows(model: Any, site: str) -> list[tuple[str, str]]:
    """The lens's rows as ``(label, hook name)``: ``site`` at every layer, then the final residual.

    For ``resid_pre`` / ``resid_mid`` a row ``"final"`` (the last ``resid_post``, what the
    unembedding reads) is appended; for ``resid_post`` the last layer's row already is it.
    """
    if site not in ("resid_pre", "resid_mid", "resid_post"):
        raise MechinterpError(f"site must be 'resid_pre', 'resid_mid' or 'resid_post', got {site!r}.")
    n = model.cfg.n_layers
    rows = [(f"{site} {l}", f"blocks.{l}.hook_{site}") for l in range(n)]
    if site != "resid_post":
        rows.append(("final", f"blocks.{n - 1}.hook_resid_post"))
    return rows


def answer_ids(model: Any, answers: Any, n: int) -> Tensor | None:
    """One answer token id per prompt from strings, ids, or one answer for all (``None`` stays ``None``)."""
    if answers is None:
        return None
    if isinstance(answers, str):
        answers = [answers] * n
    if isinstance(answers, Tensor):
        ids = answers.long().flatten()
    else:
        answers = list(answers)
        ids = torch.as_tensor(answers, dtype=torch.long) if answers and isinstance(answers[0], int) else answer_tokens(model, answers)
    if ids.numel() == 1:
        ids = ids.expand(n)
    if ids.shape != (n,):
        raise ShapeMismatchError(f"Give one answer per prompt ({n}) or one for all, got {ids.numel()}.")
    if bool((ids < 0).any()) or bool((ids >= model.cfg.d_vocab_out).any()):
        raise MechinterpError(f"Answer token ids must lie in [0, {model.cfg.d_vocab_out}).")
    return ids
