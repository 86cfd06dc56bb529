"""The batched trainer: one fit for every cell equals scikit-learn fitted cell by cell."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mechinterp.errors import MechinterpError, NonFiniteError
from mechinterp.probes import fit_logistic, fit_mass_mean, fit_ridge


@pytest.fixture(scope="module")
def cells():
    """4 cells of [300, 16] features; the label is linear in cell 0 and weaker in the others."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(4, 300, 16, generator=g) * 2 + 0.5
    w = torch.randn(16, generator=g)
    y = ((X[0] @ w) + 2 * torch.randn(300, generator=g) > 0).long()
    X[1:, :, 0] += 0.8 * (2 * y - 1)  # a weak signal in the other cells
    return X, y


def test_batched_logistic_equals_sklearn_per_cell(cells):
    X, y = cells
    heads = fit_logistic(X[:, :200], y[:200], 2, C=1.0)
    acc = heads.accuracy(X[:, 200:], y[200:])
    for c in range(4):
        ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, tol=1e-10, max_iter=5000)).fit(X[c, :200], y[:200])
        assert abs(acc[c].item() - ref.score(X[c, 200:], y[200:])) <= 0.02
        coef = ref[-1].coef_[0] / ref[0].scale_
        np.testing.assert_allclose(heads.weight[c, :, 0].numpy(), coef, atol=2e-3 * np.abs(coef).max())


def test_newton_and_lbfgs_reach_the_same_minimiser(cells):
    """Binary probes: batched Newton (default) and L-BFGS minimise the same strictly convex objective."""
    X, y = cells
    weight = (torch.rand(4, 300, generator=torch.Generator().manual_seed(3)) < 0.8).double()
    newton = fit_logistic(X, y, 2, sample_weight=weight, solver="newton", dtype=torch.float64, tol=1e-9)
    lbfgs = fit_logistic(X, y, 2, sample_weight=weight, solver="lbfgs", dtype=torch.float64, tol=1e-9)
    assert newton.n_iter <= 15 < lbfgs.n_iter
    torch.testing.assert_close(newton.weight, lbfgs.weight, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(newton.bias, lbfgs.bias, atol=1e-6, rtol=1e-5)
    keep = weight[1].bool().numpy()
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, tol=1e-12, max_iter=10000)).fit(X[1, keep], y[keep])
    np.testing.assert_allclose(newton.weight[1, :, 0].numpy(), ref[-1].coef_[0] / ref[0].scale_, rtol=1e-5, atol=1e-7)
    with pytest.raises(MechinterpError, match="binary"):
        fit_logistic(X, y.clamp(max=1) + (y > 0).long(), 3, solver="newton")


def test_multiclass_per_cell_labels_and_masks(cells):
    X, _ = cells
    y3 = torch.stack([X[c, :, :3].argmax(-1) for c in range(4)])  # different labels per cell
    weight = torch.ones(4, 300)
    weight[:, 250:] = 0  # masked rows must not matter
    X2 = X.clone()
    X2[:, 250:] = 1e3
    heads = fit_logistic(X2, y3, 3, sample_weight=weight)
    ref = fit_logistic(X[:, :250], y3[:, :250], 3)
    torch.testing.assert_close(heads.weight, ref.weight, atol=1e-3, rtol=1e-3)
    sk = make_pipeline(StandardScaler(), LogisticRegression(tol=1e-10, max_iter=5000)).fit(X[2, :250], y3[2, :250])
    assert abs(heads.accuracy(X[:, :250], y3[:, :250])[2].item() - sk.score(X[2, :250], y3[2, :250])) <= 0.01


def test_chunked_reading_gives_the_same_fit(cells):
    X, y = cells
    full = fit_logistic(X, y, 2)
    chunked = fit_logistic(list(X), y, 2, chunk_rows=37)
    torch.testing.assert_close(chunked.weight, full.weight, atol=1e-3, rtol=1e-3)
    r_full, r_chunk = fit_ridge(X, X[0, :, 0] * 3.0, alpha=0.5), fit_ridge(list(X), X[0, :, 0] * 3.0, alpha=0.5, chunk_rows=50)
    torch.testing.assert_close(r_chunk.weight, r_full.weight, atol=1e-5, rtol=1e-4)


def test_ridge_and_mass_mean_closed_forms(cells):
    X, y = cells
    t = X[1] @ torch.arange(16.0) / 10
    heads = fit_ridge(X, t, alpha=2.0)
    ref = Ridge(alpha=2.0).fit(X[1].double().numpy(), t.double().numpy())
    np.testing.assert_allclose(heads.weight[1, :, 0].numpy(), ref.coef_, atol=1e-5)
    mm = fit_mass_mean(X, y, 2)
    mu0, mu1 = X[0][y == 0].mean(0), X[0][y == 1].mean(0)
    torch.testing.assert_close(mm.directions()[0], mu1 - mu0, atol=1e-5, rtol=1e-5)
    nearest = ((X[0, :, None] - torch.stack([mu0, mu1])) ** 2).sum(-1).argmin(-1)
    assert torch.equal(mm.predict(X)[0], nearest)


def test_trainer_bad_input(cells):
    X, y = cells
    with pytest.raises(MechinterpError, match="one per example"):
        fit_logistic(X, y[:-1], 2)
    with pytest.raises(MechinterpError, match="class codes"):
        fit_logistic(X, y + 5, 2)
    bad = X.clone()
    bad[2, 5, 3] = float("nan")
    with pytest.raises(NonFiniteError):
        fit_logistic(bad, y, 2)
    with pytest.raises(NonFiniteError):
        fit_mass_mean(bad, y, 2)
    with pytest.raises(MechinterpError, match="weights are zero"):
        fit_logistic(X, y, 2, sample_weight=torch.zeros(300))
