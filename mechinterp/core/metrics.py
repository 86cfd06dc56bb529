"""Metrics on logits, shared by patching, circuits and attribution.

All take logits ``[batch, pos, d_vocab]`` and the position to read per prompt (the last
real token by default), and return one number per prompt. :func:`normalise` maps a
metric onto the scale where the corrupted run is 0 and the clean run is 1.
:func:`unembed` turns residual-stream vectors into logits without TL's per-call copy of
``W_U.T``, for the methods that compute logits at a few positions or columns only.

:data:`Metric` is the type every family means by "a metric": a function of the logits
``[batch, pos, d_vocab]`` giving one number per prompt ``[batch]`` (patching's and circuits'
``metric=``, a task's ``task.metric``, probes' ``causal_check(metric=)``; attribution wraps
one as a target with :class:`mechinterp.attribution.MetricTarget`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.errors import NonFiniteError, ShapeMismatchError

__all__ = ["Metric", "metric_label", "unembed", "logits_at", "logit_diff", "logprob", "prob", "kl_div", "normalise"]

#: a metric: logits ``[batch, pos, d_vocab]`` -> one number per prompt ``[batch]``.
Metric = Callable[[Float[Tensor, "batch pos d_vocab"]], Float[Tensor, " batch"]]


def unembed(
    model: Any, resid: Float[Tensor, "batch n_pos d_model"], columns: list[int] | Tensor | None = None, *,
    float32: bool = False,
) -> Float[Tensor, "batch n_pos n_columns"]:
    """Final norm and unembedding (and the logit soft cap), for the vocabulary ``columns`` only when given.

    ``resid @ W_U + b_U`` directly: TL's ``Unembed.forward`` copies ``W_U.T`` into a
    contiguous matrix on every call (the whole ``d_model x d_vocab`` matrix, the largest
    copy of a forward pass), which the matmul does not need. ``float32``: the normalised
    residual and ``W_U`` multiply in float32 (the final norm runs in the model's dtype).

    Example:
        >>> resid = model(tokens, stop_at_layer=model.cfg.n_layers)  # doctest: +SKIP
        >>> torch.allclose(unembed(model, resid), model.unembed(model.ln_final(resid)))  # doctest: +SKIP
        True
    """
    if model.cfg.normalization_type is not None:
        resid = model.ln_final(resid)
    w_u, b_u = model.unembed.W_U, model.unembed.b_U
    if columns is not None:
        idx = torch.as_tensor(columns, device=w_u.device)
        w_u, b_u = w_u[:, idx], b_u[idx]  # [d_model, n_columns], [n_columns]
    if float32:
        resid, w_u, b_u = resid.float(), w_u.float(), b_u.float()
    logits = torch.matmul(resid, w_u) + b_u  # [batch, n_pos, n_columns]
    cap = getattr(model.cfg, "output_logits_soft_cap", -1.0)
    if cap is not None and cap > 0:
        logits = cap * torch.tanh(logits / cap)
    return logits


def _positions(logits: Tensor, pos: Int[Tensor, " batch"] | int | None) -> Tensor:
    batch = logits.shape[0]
    if pos is None:
        return torch.full((batch,), logits.shape[1] - 1, dtype=torch.long, device=logits.device)
    if isinstance(pos, int):
        return torch.full((batch,), pos % logits.shape[1], dtype=torch.long, device=logits.device)
    pos = torch.as_tensor(pos, device=logits.device).long()
    if pos.shape != (batch,):
        raise ShapeMismatchError(f"pos must have one entry per prompt ({batch}), got shape {tuple(pos.shape)}.")
    return pos


def logits_at(
    logits: Float[Tensor, "batch pos d_vocab"], pos: Int[Tensor, " batch"] | int | None = None
) -> Float[Tensor, "batch d_vocab"]:
    """The logits at one position per prompt (``None``: the last position)."""
    if logits.ndim == 2:
        return logits
    if logits.ndim != 3:
        raise ShapeMismatchError(f"Expected logits [batch, pos, d_vocab], got shape {tuple(logits.shape)}.")
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, _positions(logits, pos)]


def _ids(ids: Int[Tensor, " batch"] | int, batch: int, device: torch.device) -> Tensor:
    ids = torch.as_tensor(ids, device=device).long()
    if ids.ndim == 0:
        ids = ids.expand(batch)
    if ids.shape != (batch,):
        raise ShapeMismatchError(
            f"Answer ids must be one per prompt ({batch}), got shape {tuple(ids.shape)}. "
            "Multi-token answers need a multi-token target."
        )
    return ids


def logit_diff(
    logits: Float[Tensor, "batch pos d_vocab"],
    correct: Int[Tensor, " batch"] | int,
    wrong: Int[Tensor, " batch"] | int,
    pos: Int[Tensor, " batch"] | int | None = None,
) -> Float[Tensor, " batch"]:
    """Logit of the correct answer minus the logit of the wrong one.

    Example:
        >>> logits = torch.tensor([[[0.0, 2.0, 1.0]]])
        >>> logit_diff(logits, correct=1, wrong=2)
        tensor([1.])
    """
    final = logits_at(logits, pos)
    rows = torch.arange(final.shape[0], device=final.device)
    return final[rows, _ids(correct, final.shape[0], final.device)] - final[rows, _ids(wrong, final.shape[0], final.device)]


def logprob(
    logits: Float[Tensor, "batch pos d_vocab"],
    answer: Int[Tensor, " batch"] | int,
    pos: Int[Tensor, " batch"] | int | None = None,
) -> Float[Tensor, " batch"]:
    """Log-probability of ``answer`` at ``pos``."""
    final = logits_at(logits, pos).log_softmax(-1)
    rows = torch.arange(final.shape[0], device=final.device)
    return final[rows, _ids(answer, final.shape[0], final.device)]


def prob(
    logits: Float[Tensor, "batch pos d_vocab"],
    answer: Int[Tensor, " batch"] | int,
    pos: Int[Tensor, " batch"] | int | None = None,
) -> Float[Tensor, " batch"]:
    """Probability of ``answer`` at ``pos``."""
    return logprob(logits, answer, pos).exp()


def kl_div(
    logits: Float[Tensor, "batch pos d_vocab"],
    reference_logits: Float[Tensor, "batch pos d_vocab"],
    pos: Int[Tensor, " batch"] | int | None = None,
) -> Float[Tensor, " batch"]:
    """KL(reference || logits) of the next-token distributions at ``pos`` (0 when equal)."""
    if logits.shape != reference_logits.shape:
        raise ShapeMismatchError(f"logits {tuple(logits.shape)} and reference {tuple(reference_logits.shape)} differ in shape.")
    log_p = logits_at(reference_logits, pos).log_softmax(-1)
    log_q = logits_at(logits, pos).log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def normalise(
    value: Float[Tensor, "..."], clean: Float[Tensor, "..."] | float, corrupted: Float[Tensor, "..."] | float
) -> Float[Tensor, "..."]:
    """Rescale a metric so that the corrupted run is 0 and the clean run is 1: ``(value - corrupted) / (clean - corrupted)``.

    For noising experiments pass the baselines the other way round (``clean`` is then the
    value the patch moves towards). Every family that reports a normalised effect calls this
    (patching's sweeps, path patching, attribution patching, causal tracing; circuits'
    faithfulness). ``value`` keeps its dtype; number baselines are read in float64.

    Raises:
        NonFiniteError: NaN inputs, or clean and corrupted baselines that are equal (the
            scale would divide by zero: the corruption does not change the metric).

    Example:
        >>> normalise(torch.tensor(1.5), clean=2.0, corrupted=1.0)
        tensor(0.5000)
    """
    value = torch.as_tensor(value)
    clean_t = clean if isinstance(clean, Tensor) else torch.as_tensor(clean, dtype=torch.float64)
    corrupted_t = corrupted if isinstance(corrupted, Tensor) else torch.as_tensor(corrupted, dtype=torch.float64)
    gap = clean_t - corrupted_t
    if torch.isnan(value).any() or torch.isnan(gap).any():
        raise NonFiniteError("normalise got NaN values: check the model outputs and the metric.")
    if (gap.abs() < 1e-8).any():
        raise NonFiniteError(
            f"The clean and corrupted baselines are equal ({float(clean_t.flatten()[0]):.4g}), so the "
            "normalised metric is undefined: the corruption does not change the metric. Pick a "
            "corruption that does, or use the raw metric."
        )
    return (value - corrupted_t.to(value.device)) / gap.to(value.device)


def metric_label(metric: Any) -> str:
    """How figures and captions name a metric: a string as given, a task's metric by what it computes.

    ``task.metric`` (a bound method named ``metric``) is ``"logit_diff"`` for a task with the
    default metric and ``"<task name> metric"`` for one with its own; other callables go by
    their ``__name__``.

    Example:
        >>> metric_label("kl"), metric_label(logit_diff)
        ('kl', 'logit_diff')
    """
    if isinstance(metric, str):
        return metric
    owner = getattr(metric, "__self__", None)
    if owner is not None and hasattr(owner, "metric_fn") and getattr(metric, "__name__", "") == "metric":
        fn = owner.metric_fn
        name = "logit_diff" if fn is None else getattr(fn, "__name__", "")
        return name if name and name not in ("metric", "<lambda>") else f"{getattr(owner, 'name', 'task')} metric"
    return str(getattr(metric, "__name__", None) or type(metric).__name__)
