"""Turning what users pass (prompts, token ids or a ``Task``, and a metric) into checked tensors.

Every patching entry point goes through :func:`prepare_patch_inputs`, so bad input fails the same way
everywhere: clean and corrupted prompts of different token lengths or batch sizes raise a
:class:`~mechinterp.errors.ShapeMismatchError`; a metric that does not return one finite
number per prompt raises a :class:`~mechinterp.errors.ShapeMismatchError` or
:class:`~mechinterp.errors.NonFiniteError` naming what it returned.

A *metric* maps logits ``[batch, pos, d_vocab]`` to one number per prompt ``[batch]``. It
may be a callable, a ``Task`` (its ``task.metric``), or a name with ``answers``:

* ``"logit_diff"`` — logit of the correct answer minus the wrong one (``answers=(correct, wrong)``);
* ``"logprob"`` / ``"prob"`` — of the correct answer (``answers=correct``);
* ``"kl"`` — minus the KL divergence from the clean next-token distribution (0 on the clean run).

Scores are read at each prompt's last real token; named metrics say so in a ``positions``
attribute, which lets the batched runs compute logits only there
(:mod:`mechinterp.patching.readout`; user callables are probed instead).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.core.deprecation import deprecated_alias
from mechinterp.core.metrics import Metric, kl_div, logit_diff, logprob, metric_label, prob
from mechinterp.core.precision import fp16_hint
from mechinterp.core.storage import parse_bytes
from mechinterp.core.validation import check_task
from mechinterp.core.tokens import Tokenized, answer_tokens, check_same_lengths, tokenize
from mechinterp.errors import MechinterpError, NonFiniteError, ShapeMismatchError

__all__ = [
    "Metric", "PatchInputs", "prepare_patch_inputs", "evaluate_metric", "check_value", "check_count", "check_budget", "METRIC_NAMES",
    "NON_FINITE", "STRATEGIES", "resolve_strategy", "check_sizes",
]

METRIC_NAMES = ("logit_diff", "logprob", "prob", "kl")


@dataclass(frozen=True)
class PatchInputs:
    """Checked inputs of a patching experiment.

    Attributes:
        clean: ``[batch, pos]`` clean token ids.
        corrupted: ``[batch, pos]`` corrupted token ids, or ``None`` (ablations only).
        lengths: real tokens per prompt (padding excluded).
        metric: ``logits -> [batch]``.
        metric_name: a short description for labels.
        str_tokens: the clean tokens of prompt 0, as strings (axis labels); ``…`` past its end
            (prompts of different lengths).
    """

    clean: Int[Tensor, "batch pos"]
    corrupted: Int[Tensor, "batch pos"] | None
    lengths: Int[Tensor, " batch"]
    metric: Metric
    metric_name: str
    str_tokens: list[str]

    @property
    def batch(self) -> int:
        return self.clean.shape[0]

    @property
    def n_pos(self) -> int:
        return self.clean.shape[1]


def check_count(value: Any, name: str, *, none_ok: bool = False, hint: str = "") -> None:
    """Raise unless ``value`` is an integer >= 1 (or ``None`` when ``none_ok``); ``name`` is the argument."""
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        allowed = "a positive integer" + (" or None" if none_ok else "")
        raise MechinterpError(f"{name} must be {allowed}, got {value!r}.{hint}")


def check_budget(memory_budget: Any) -> None:
    """Raise unless ``memory_budget`` is ``"auto"``, ``None`` (no limit) or a positive size (bytes or ``"512MB"``)."""
    if memory_budget is None or (isinstance(memory_budget, str) and memory_budget == "auto"):
        return
    hint = " Pass a positive number of bytes, a size like '512MB', 'auto' (the default) or None (no limit)."
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, (numbers.Real, str)):
        raise MechinterpError(f"memory_budget must be a size, got {memory_budget!r}.{hint}")
    try:
        size = parse_bytes(memory_budget)
    except MechinterpError:
        raise MechinterpError(f"memory_budget must be a size, got {memory_budget!r}.{hint}") from None
    if not size > 0:  # also NaN
        raise MechinterpError(f"memory_budget must be positive, got {memory_budget!r}.{hint}")


def check_sizes(chunk_size: Any, memory_budget: Any) -> None:
    """Raise unless ``chunk_size`` is a positive integer or ``None`` and ``memory_budget`` a size (:func:`check_budget`)."""
    check_count(chunk_size, "chunk_size", none_ok=True, hint=" Pass the variants per stacked pass, or None to fit memory_budget.")
    check_budget(memory_budget)


#: How patched runs execute: stacked in few passes, or one full forward pass per patch (a reference).
STRATEGIES = ("batched", "naive")


def resolve_strategy(strategy: str, method: str | None, function: str) -> str:
    """The execution strategy. ``method=`` was its name before (``method`` names the algorithm in every
    other family); it still works for one release, with a DeprecationWarning."""
    if method is not None:
        warnings.warn(
            f"{function}(method={method!r}) is deprecated and will be removed in the next release: `method` names "
            f"the algorithm everywhere else. Pass strategy={method!r} instead.", DeprecationWarning, stacklevel=3,
        )
        strategy = method
    if strategy not in STRATEGIES:
        raise MechinterpError(f"strategy must be 'batched' (stacked passes) or 'naive' (one forward pass per patch, "
                              f"a reference), got {strategy!r}.")
    return strategy


def _is_task(obj: Any) -> bool:
    return hasattr(obj, "clean_tokens") and hasattr(obj, "corrupted_tokens") and hasattr(obj, "metric")


def _tokens(model: Any, prompts: Any, what: str) -> Tokenized:
    if isinstance(prompts, Tokenized):
        return prompts
    try:
        return tokenize(model, prompts, name=what)
    except MechinterpError as err:
        if str(err).startswith(what):
            raise
        raise type(err)(f"{what} prompts: {err}") from None


def _ids(model: Any, answers: Any, batch: int) -> Tensor:
    ids = answers if isinstance(answers, Tensor) else answer_tokens(model, answers)
    ids = torch.as_tensor(ids).long().flatten()
    if ids.numel() == 1:
        ids = ids.expand(batch)
    if ids.shape != (batch,):
        raise ShapeMismatchError(f"Got {ids.numel()} answers for {batch} prompts: pass one answer per prompt (or one for all).")
    return ids


def _named_metric(model: Any, name: str, answers: Any, last: Tensor, clean_logits: Any) -> Metric:
    """A metric from its name; ``clean_logits`` is a zero-argument callable (KL needs the clean run)."""
    batch = last.shape[0]
    if name == "kl":
        reference: list[Tensor] = []

        def kl_metric(logits: Tensor) -> Tensor:
            if not reference:
                reference.append(clean_logits())
            ref = reference[0].to(logits.device)
            rows = torch.arange(batch, device=logits.device)
            return -kl_div(logits[rows, last][:, None], ref[rows, last][:, None])

        kl_metric.positions = last  # type: ignore[attr-defined]  # read by mechinterp.patching.readout
        return kl_metric
    if answers is None:
        raise MechinterpError(
            f"metric={name!r} needs answers: pass answers=(correct, wrong) for 'logit_diff' or answers=correct "
            "for 'logprob'/'prob' (strings or token ids, one per prompt)."
        )
    if name == "logit_diff":
        if not (isinstance(answers, (tuple, list)) and len(answers) == 2):
            raise MechinterpError("metric='logit_diff' needs answers=(correct, wrong): a pair of answer lists.")
        correct, wrong = _ids(model, answers[0], batch), _ids(model, answers[1], batch)

        def diff_metric(logits: Tensor) -> Tensor:
            return logit_diff(logits, correct.to(logits.device), wrong.to(logits.device), last.to(logits.device))

        diff_metric.positions = last  # type: ignore[attr-defined]
        return diff_metric
    correct = _ids(model, answers, batch)
    fn = logprob if name == "logprob" else prob

    def answer_metric(logits: Tensor) -> Tensor:
        return fn(logits, correct.to(logits.device), last.to(logits.device))

    answer_metric.positions = last  # type: ignore[attr-defined]
    return answer_metric


def prepare_patch_inputs(
    model: Any,
    clean: Any,
    corrupted: Any = None,
    metric: Metric | str | None = None,
    *,
    answers: Any = None,
    need_corrupted: bool = True,
) -> PatchInputs:
    """Check and tokenise the inputs of a patching experiment.

    Args:
        model: the ``HookedTransformer``.
        clean: prompts, token ids ``[batch, pos]``, or a ``Task`` (then ``corrupted`` and
            ``metric`` default to the task's).
        corrupted: prompts or token ids aligned with ``clean`` token by token.
        metric: a callable ``logits -> [batch]``, or one of :data:`METRIC_NAMES`.
        answers: the answers of a named metric.
        need_corrupted: raise if no corrupted input is given.

    Raises:
        ShapeMismatchError: different batch sizes or per-prompt token lengths.
        MechinterpError: no metric, or an unknown metric name.

    Example:
        >>> inputs = prepare_patch_inputs(model, task)  # doctest: +SKIP
    """
    if _is_task(clean):
        task = clean
        check_task(model, task, "clean")
        corrupted = task.corrupted_tokens if corrupted is None else corrupted
        metric = task.metric if metric is None else metric
        clean_tok = Tokenized(task.clean_tokens, (torch.arange(task.clean_tokens.shape[1]) < task.lengths[:, None]).long(), task.lengths)
        answers = (task.correct_tokens, task.wrong_tokens) if answers is None else answers
    else:
        clean_tok = _tokens(model, clean, "clean")
    corrupted_tok = None
    if corrupted is not None:
        corrupted_tok = (
            Tokenized(corrupted, torch.ones_like(corrupted), clean_tok.lengths)
            if _is_task(clean) and isinstance(corrupted, Tensor)
            else _tokens(model, corrupted, "corrupted")
        )
        check_same_lengths(clean_tok, corrupted_tok)
        if corrupted_tok.tokens.shape != clean_tok.tokens.shape:
            raise ShapeMismatchError(
                f"Clean tokens {tuple(clean_tok.tokens.shape)} and corrupted tokens "
                f"{tuple(corrupted_tok.tokens.shape)} differ in shape: pass aligned prompts."
            )
    elif need_corrupted:
        raise MechinterpError(
            "Patching needs corrupted prompts (aligned with the clean ones token by token), a Task, "
            "or an ablation (ablation='zero'|'mean'|'resample')."
        )
    if metric is None:
        raise MechinterpError(
            "No metric: pass metric=callable(logits)->[batch], a name from "
            f"{list(METRIC_NAMES)} with answers=..., or a Task (its metric is used)."
        )
    last = clean_tok.lengths - 1
    name = metric_label(metric)  # a task's metric is named by what it computes, not "metric"
    if isinstance(metric, str):
        if metric not in METRIC_NAMES:
            raise MechinterpError(f"Unknown metric {metric!r}: use one of {list(METRIC_NAMES)} or a callable.")
        tokens = clean_tok.tokens
        metric = _named_metric(model, metric, answers, last, lambda: model(tokens.to(model.cfg.device)).detach())
    elif not callable(metric):
        raise MechinterpError(f"metric must be a callable logits -> [batch] or a name, got {type(metric).__name__}.")
    device = model.cfg.device
    return PatchInputs(
        clean=clean_tok.tokens.to(device),
        corrupted=None if corrupted_tok is None else corrupted_tok.tokens.to(device),
        lengths=clean_tok.lengths,
        metric=metric,
        metric_name=str(name),
        str_tokens=_axis_tokens(model, clean_tok),
    )


#: the label of a position past prompt 0's end (its effects come from the longer prompts, not from padding)
PAST_PROMPT_0 = "…"


def _axis_tokens(model: Any, batch: Any) -> list[str]:
    """Position labels: prompt 0's tokens, then (right padding) ``…`` past its end.

    Not the padding token: the effects there come from the longer prompts. Not another prompt's
    tokens either: which prompt is longest depends on how the prompts are split across ranks.
    """
    labels = _str_tokens(model, batch.tokens[0])
    n0 = int(batch.lengths[0])
    if getattr(batch, "padding_side", "right") == "right" and n0 < len(labels):
        labels[n0:] = [PAST_PROMPT_0] * (len(labels) - n0)
    return labels


def _str_tokens(model: Any, row: Tensor) -> list[str]:
    if getattr(model, "tokenizer", None) is None:
        return [str(int(t)) for t in row]
    return [str(s) for s in model.to_str_tokens(row.cpu())]


NON_FINITE = "The metric returned NaN or infinite values; check the model's outputs (NaN weights?) and the metric."


def evaluate_metric(metric: Metric, logits: Float[Tensor, "batch pos d_vocab"], batch: int) -> Float[Tensor, " batch"]:
    """Apply ``metric`` and check it gives one finite number per prompt.

    Raises:
        ShapeMismatchError: the metric returned something other than shape ``[batch]``.
        NonFiniteError: NaN or infinite values.
    """
    value = check_value(metric(logits), batch, finite=False)
    if not torch.isfinite(value).all():
        raise NonFiniteError(NON_FINITE + fp16_hint(logits.dtype))
    return value


def check_value(value: Any, batch: int, *, finite: bool = True) -> Float[Tensor, " batch"]:
    """Check a metric's value is one number per prompt (and finite, unless ``finite=False``).

    Raises:
        ShapeMismatchError: shape other than ``[batch]``.
        NonFiniteError: NaN or infinite values.
    """
    if not isinstance(value, Tensor):
        value = torch.as_tensor(value)
    if value.shape != (batch,):
        raise ShapeMismatchError(
            f"The metric returned shape {tuple(value.shape)} for {batch} prompts; it must return one number per "
            "prompt, shape [batch] (e.g. drop a .mean(), or read the logits at one position per prompt)."
        )
    if finite and not torch.isfinite(value).all():
        raise NonFiniteError(NON_FINITE + fp16_hint(value.dtype))
    return value.detach().float()


def as_list(value: int | Sequence[int] | None, full: int) -> list[int]:
    """``None`` -> ``range(full)``; an int -> ``[int]``; negatives count from the end."""
    if value is None:
        return list(range(full))
    items = [value] if isinstance(value, int) else list(value)
    out = []
    for v in items:
        if not -full <= int(v) < full:
            raise MechinterpError(f"Index {v} is out of range 0..{full - 1}.")
        out.append(int(v) % full)
    if not out:
        raise MechinterpError("An empty selection of layers/positions/heads: select at least one.")
    return out


#: deprecated old name of :func:`prepare_patch_inputs` (removed in the next release).
prepare = deprecated_alias(prepare_patch_inputs, "mechinterp.patching.inputs.prepare", "mechinterp.patching.inputs.prepare_patch_inputs")
