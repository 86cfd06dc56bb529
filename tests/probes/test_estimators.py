"""The probes as scikit-learn estimators: sklearn's own checks, and agreement with sklearn's models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import NearestCentroid
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from mechinterp import SharedCache
from mechinterp.errors import MechinterpError, NonFiniteError, ShapeMismatchError
from mechinterp.probes import LogisticProbe, MassMeanProbe, RidgeProbe, SingleClassError


# The L1 probe delegates to scikit-learn's saga solver (itself checked by scikit-learn); it is
# compared with LogisticRegression(l1_ratio=1) below instead of re-running the whole suite.
@parametrize_with_checks([LogisticProbe(), MassMeanProbe(), RidgeProbe()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def activations(tiny_model):
    """Final-layer last-token activations of the tiny model; label = first word is in w0..w4."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 240)
    prompts = [" ".join([f"w{rng.integers(0, 5) if y else rng.integers(5, 10)}"] + [f"w{rng.integers(10, 45)}" for _ in range(4)])
               for y in labels]
    cache = SharedCache(tiny_model, prompts, positions=[1], progress=False)
    return cache["resid_post", 1][:, 0].numpy().astype(np.float64), labels


def test_logistic_matches_sklearn_on_activations(activations):
    X, y = activations
    Xtr, Xte, ytr, yte = X[:160], X[160:], y[:160], y[160:]
    ours = LogisticProbe(C=0.5).fit(Xtr, ytr)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, tol=1e-10, max_iter=5000)).fit(Xtr, ytr)
    assert abs(ours.score(Xte, yte) - ref.score(Xte, yte)) <= 0.01
    coef = ref[-1].coef_ / ref[0].scale_
    np.testing.assert_allclose(ours.coef_, coef, atol=1e-4 * np.abs(coef).max())
    np.testing.assert_allclose(ours.predict_proba(Xte), ref.predict_proba(Xte), atol=1e-4)


def test_multiclass_and_l1_match_sklearn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 12))
    y = np.argmax(X[:, :3] + 0.3 * rng.normal(size=(300, 3)), 1)
    ours = LogisticProbe(C=2.0).fit(X, y)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=2.0, tol=1e-10, max_iter=5000)).fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-4)
    l1 = LogisticProbe(C=0.05, penalty="l1").fit(X, y)
    ref1 = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, l1_ratio=1.0, solver="saga", tol=1e-6, max_iter=10000)).fit(X, y)
    assert (np.abs(l1.coef_) < 1e-8).sum() > 10  # L1 zeroes the noise features
    np.testing.assert_array_equal(np.abs(l1.coef_) < 1e-8, np.abs(ref1[-1].coef_) < 1e-8)
    assert abs(l1.score(X, y) - ref1.score(X, y)) <= 0.01


def test_mass_mean_is_nearest_centroid_and_ridge_is_sklearn_ridge():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 6)) + np.repeat(np.eye(6)[:4] * 2, 50, 0)
    y = np.repeat(np.arange(4), 50)
    mm = MassMeanProbe().fit(X, y)
    np.testing.assert_array_equal(mm.predict(X), NearestCentroid().fit(X, y).predict(X))
    binary = MassMeanProbe().fit(X[:100], y[:100])
    np.testing.assert_allclose(binary.direction_, (X[50:100].mean(0) - X[:50].mean(0)) / np.linalg.norm(X[50:100].mean(0) - X[:50].mean(0)))
    t = X @ rng.normal(size=6) + 0.1 * rng.normal(size=200)
    ours, ref = RidgeProbe(alpha=3.0).fit(X, t), Ridge(alpha=3.0).fit(X, t)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-6, atol=1e-9)
    assert ours.score(X, t) == pytest.approx(ref.score(X, t), abs=1e-9)


def test_bad_input_raises_mechinterp_errors():
    X = np.random.default_rng(0).normal(size=(20, 3))
    y = np.arange(20) % 2
    with pytest.raises(ShapeMismatchError, match="label"):
        LogisticProbe().fit(X, y[:-1])
    with pytest.raises(SingleClassError, match="at least 2 classes"):
        LogisticProbe().fit(X, np.zeros(20))
    bad = X.copy()
    bad[3, 1] = np.nan
    for probe in (LogisticProbe(), MassMeanProbe(), RidgeProbe()):
        with pytest.raises(NonFiniteError, match="NaN"):
            probe.fit(bad, y)
    with pytest.raises(MechinterpError, match="penalty"):
        LogisticProbe(penalty="l3").fit(X, y)
    fitted = LogisticProbe().fit(X, y)
    with pytest.raises(ShapeMismatchError):
        fitted.predict(X[:, :2])
    assert isinstance(fitted.fit(X, y), LogisticProbe)  # fit returns self
    assert torch.is_tensor(torch.as_tensor(fitted.direction_))


@pytest.mark.parametrize("penalty", ["l2", "l1"])
@pytest.mark.parametrize("kwargs,name", [({"C": float("nan")}, "C"), ({"C": 0.0}, "C"),
                                         ({"max_iter": 0}, "max_iter"), ({"max_iter": -1}, "max_iter")])
def test_logistic_probe_rejects_bad_C_and_max_iter(kwargs, name, penalty):
    """Issue 16 item 8: ``C=nan`` / ``max_iter=0`` gave chance accuracy with no error."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(int)
    with pytest.raises(MechinterpError, match=rf"\b{name}\b"):
        LogisticProbe(penalty=penalty, **kwargs).fit(X, y)
