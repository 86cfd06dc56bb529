"""Baselines reported next to every probe score.

* **Control task** (Hewitt & Liang 2019): every word type gets a label drawn at random
  (from the empirical label distribution) once, and every example of that type carries
  it. A probe that reaches high accuracy on this task does so by memorising types, not by
  reading the property. **Selectivity** = task score − control score; a good probe is
  accurate *and* selective.
* **Random directions**: project the activations onto random unit vectors and fit a
  one-dimensional probe on each; what a direction that was *not* learned gives.
* **Majority class**: always predict the training set's most frequent class.

Example:
    >>> control_labels(["a", "b", "a", "c"], np.array([0, 1, 0, 1]), seed=0).tolist()  # doctest: +SKIP
    [1, 0, 1, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["control_labels", "majority_baseline", "random_directions"]


def control_labels(types: Sequence[str], y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hewitt–Liang control labels: a random label per distinct type, shared by its examples.

    Labels are drawn from the empirical distribution of ``y`` (class codes or targets), in
    order of first appearance of each type, from a seeded generator.
    """
    rng = np.random.default_rng(seed)
    assigned: dict[str, object] = {}
    for t in types:
        if t not in assigned:
            assigned[t] = y[rng.integers(0, len(y))]
    return np.asarray([assigned[t] for t in types], dtype=y.dtype)


def majority_baseline(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Accuracy of predicting the most frequent training class on ``y_test``."""
    values, counts = np.unique(y_train, return_counts=True)
    return float((y_test == values[counts.argmax()]).mean())


def random_directions(d: int, k: int, seed: int = 0) -> Tensor:
    """``k`` random unit vectors in ``R^d`` (Gaussian, normalised), ``[k, d]``."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(k, d, generator=g)
    return u / u.norm(dim=-1, keepdim=True)
