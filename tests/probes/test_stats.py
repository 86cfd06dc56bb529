"""Intervals and splits, and the control-task labels."""

from __future__ import annotations

import numpy as np
import pytest

from mechinterp.probes import control_labels, majority_baseline, make_splits, random_directions, wilson_interval
from mechinterp.probes.stats import bootstrap_r2, r2_score


def test_wilson_closed_form():
    # Wilson (1927) interval for 90/100 at z=1.96: (0.8256, 0.9448); 0/10: (0, 0.2775)
    assert wilson_interval(90, 100) == pytest.approx((0.82562, 0.94482), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-4)


def test_splits_partition_and_stratify():
    y = np.array([0] * 30 + [1] * 10)
    folds = make_splits(y, cv=5, seed=0)
    held = np.concatenate([te for _, te in folds])
    assert sorted(held.tolist()) == list(range(40))
    assert all((y[te] == 1).sum() == 2 for _, te in folds)
    (train, test), = make_splits(y, test_size=0.25)
    assert len(test) == 10 and not set(train) & set(test)


def test_control_labels_are_a_function_of_type():
    types = ["a", "b", "a", "c", "b", "a"] * 50
    y = np.array([0, 1] * 150)
    ctrl = control_labels(types, y, seed=1)
    for t in set(types):
        assert len({int(c) for c, tt in zip(ctrl, types) if tt == t}) == 1
    many = control_labels([str(i) for i in range(4000)], np.array([0] * 3000 + [1] * 1000), seed=0)
    assert abs(many.mean() - 0.25) < 0.03  # drawn from the empirical label distribution
    assert majority_baseline(np.array([1, 1, 0]), np.array([1, 0, 0, 1])) == 0.5
    u = random_directions(8, 5)
    assert u.shape == (5, 8) and np.allclose(u.norm(dim=-1).numpy(), 1)


def test_r2_bootstrap():
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    pred = y + 0.5 * rng.normal(size=500)
    r2 = r2_score(y, pred)
    lo, hi = bootstrap_r2(y, pred)
    assert lo < r2 < hi and hi - lo < 0.2
