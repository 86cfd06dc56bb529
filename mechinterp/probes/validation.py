"""Input checks shared by the probes: labels, features, and the errors they raise.

Every check raises a :class:`~mechinterp.errors.MechinterpError` subclass whose message
says what was wrong and what to do. :class:`ProbeInputError` is also a ``ValueError`` so
that scikit-learn's own estimator checks recognise it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mechinterp.errors import EmptyInputError, MechinterpError, NonFiniteError, ShapeMismatchError

__all__ = [
    "ProbeInputError",
    "ProbeNonFiniteError",
    "ProbeShapeError",
    "SingleClassError",
    "encode_labels",
    "check_finite",
    "check_n_labels",
    "check_C",
    "check_max_iter",
]


class ProbeInputError(MechinterpError, ValueError):
    """Bad input to a probe (also a ``ValueError``, as scikit-learn expects)."""


class ProbeNonFiniteError(NonFiniteError, ValueError):
    """NaN or infinite activations or targets."""


class ProbeShapeError(ShapeMismatchError, ValueError):
    """Features and labels that do not line up."""


class SingleClassError(ProbeInputError):
    """Classification labels with only one class."""


def check_C(C: Any) -> None:
    """Raise :class:`ProbeInputError` unless ``C`` is a finite number above 0."""
    try:
        ok = bool(np.isfinite(float(C)) and float(C) > 0) and not isinstance(C, bool)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ProbeInputError(f"C must be a finite number above 0 (the inverse regularisation strength; smaller is "
                              f"stronger), got C={C!r}. Pass e.g. C=1.0.")


def check_max_iter(max_iter: Any) -> None:
    """Raise :class:`ProbeInputError` unless ``max_iter`` is an integer of at least 1."""
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ProbeInputError(f"max_iter must be an integer of at least 1 (optimiser iterations), got "
                              f"max_iter={max_iter!r}. Pass e.g. max_iter=1000.")


def check_n_labels(n_labels: int, n_rows: int, what: str = "prompts") -> None:
    """Raise :class:`ProbeShapeError` unless there is exactly one label per row."""
    if n_labels == 0 or n_rows == 0:
        raise EmptyInputError(f"No {what} or no labels were given: a probe needs labelled examples.")
    if n_labels != n_rows:
        raise ProbeShapeError(
            f"Got {n_labels} labels for {n_rows} {what}: pass exactly one label per {what[:-1]} (same order)."
        )


def encode_labels(labels: Sequence[Any] | np.ndarray, target: str = "auto") -> tuple[np.ndarray, list[Any] | None]:
    """Labels as integer class codes (classification) or floats (regression).

    Args:
        labels: one label per example: strings, ints, bools, or floats.
        target: ``"classification"``, ``"regression"``, or ``"auto"`` (floats with a
            fractional part mean regression; anything else classification).

    Returns:
        ``(y, classes)``: ``y`` int64 codes into ``classes`` (sorted unique labels), or
        float64 targets and ``classes=None`` for regression.

    Raises:
        SingleClassError: classification labels with a single class.
        ProbeNonFiniteError: NaN or infinite regression targets.
    """
    values = list(labels.tolist() if isinstance(labels, np.ndarray) else labels)
    if not values:
        raise EmptyInputError("The label list is empty: pass one label per prompt.")
    nested = next((v for v in values if isinstance(v, (list, tuple, dict, set, np.ndarray, torch.Tensor))), None)
    if nested is not None:
        raise ProbeInputError(
            f"labels must hold one scalar (class or number) per example, got a {type(nested).__name__} ({nested!r:.60}); "
            "per-position labels need one example per position: pick one label per prompt."
        )
    if target not in ("auto", "classification", "regression"):
        raise ProbeInputError(f"target must be 'auto', 'classification' or 'regression', got {target!r}.")
    if target == "auto":
        is_float = all(isinstance(v, (float, np.floating)) and not isinstance(v, bool) for v in values)
        target = "regression" if is_float and any(float(v) != int(float(v)) for v in values if np.isfinite(v)) else "classification"
    if target == "regression":
        y = np.asarray(values, dtype=np.float64)
        if not np.isfinite(y).all():
            raise ProbeNonFiniteError(f"{int((~np.isfinite(y)).sum())} regression target(s) are NaN or infinite: drop or fix them.")
        return y, None
    if any(isinstance(v, float) and not np.isfinite(v) for v in values):
        raise ProbeNonFiniteError("Some labels are NaN: drop those examples or give them a class.")
    try:
        classes = sorted(set(values))
    except TypeError:
        classes = sorted(set(values), key=str)
    if len(classes) < 2:
        raise SingleClassError(
            f"Only one class ({classes[0]!r}) in the labels: a classification probe needs at least 2 classes. "
            "Add examples of another class, or use target='regression' for a scalar."
        )
    index = {c: i for i, c in enumerate(classes)}
    return np.asarray([index[v] for v in values], dtype=np.int64), classes


def check_finite(x: Tensor | np.ndarray, what: str = "activations") -> None:
    """Raise :class:`ProbeNonFiniteError` if ``x`` holds NaN or infinite values."""
    t = torch.as_tensor(x)
    if t.is_floating_point() and not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise ProbeNonFiniteError(
            f"The {what} contain {bad} NaN/infinite value(s). Check the model (e.g. fp16 overflow: load it in "
            "float32) or drop the affected prompts before probing."
        )
