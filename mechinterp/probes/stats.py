"""Splits and confidence intervals for probe scores.

* :func:`make_splits` — k-fold (stratified for classes) or one held-out split, seeded.
* :func:`wilson_interval` — the Wilson score interval of an accuracy measured on ``n``
  held-out predictions (every example is predicted once under k-fold CV, so the pooled
  out-of-fold accuracy is a binomial proportion over ``n`` examples).
* :func:`bootstrap_r2` — a percentile bootstrap interval for R².

Example:
    >>> lo, hi = wilson_interval(90, 100)
    >>> round(lo, 3), round(hi, 3)
    (0.826, 0.945)
"""

from __future__ import annotations

import math

import numpy as np

from mechinterp.probes.validation import ProbeInputError

__all__ = ["make_splits", "wilson_interval", "bootstrap_r2", "r2_score"]


def make_splits(
    y: np.ndarray, *, cv: int | None = None, test_size: float = 0.25, classification: bool = True, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Index pairs ``(train, test)``: ``cv`` folds, or one split with ``test_size`` held out."""
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    n = len(y)
    idx = np.arange(n)
    stratify = classification and np.bincount(y).min() >= (cv or 2)
    if cv is not None:
        if cv < 2 or cv > n:
            raise ProbeInputError(f"cv must be between 2 and the number of examples ({n}), got {cv}.")
        splitter = StratifiedKFold(cv, shuffle=True, random_state=seed) if stratify else KFold(cv, shuffle=True, random_state=seed)
        return [(tr, te) for tr, te in splitter.split(idx, y if stratify else None)]
    if not 0 < test_size < 1:
        raise ProbeInputError(f"test_size must be a fraction in (0, 1), got {test_size}.")
    tr, te = train_test_split(idx, test_size=test_size, random_state=seed, stratify=y if stratify else None)
    return [(np.sort(tr), np.sort(te))]


def wilson_interval(correct: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for ``correct`` successes out of ``n`` (95% by default)."""
    if n <= 0:
        return (math.nan, math.nan)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``."""
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else math.nan


def bootstrap_r2(y: np.ndarray, pred: np.ndarray, n_boot: int = 300, seed: int = 0) -> tuple[float, float]:
    """A 95% percentile bootstrap interval of R² over examples."""
    rng = np.random.default_rng(seed)
    draws = [r2_score(y[s], pred[s]) for s in (rng.integers(0, len(y), len(y)) for _ in range(n_boot))]
    lo, hi = np.nanpercentile(draws, [2.5, 97.5])
    return float(lo), float(hi)
