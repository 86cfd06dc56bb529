"""LIME: sampling as LIME's text explainer, a sparse surrogate that reports its fit."""

from __future__ import annotations

import torch

from mechinterp.attribution import attribute
from mechinterp.attribution.lime import fit_surrogate, lime_samples


def test_samples_and_kernel():
    masks, weights = lime_samples(8, 200, seed=1)
    assert masks[0].all() and weights[0] == 1.0
    assert (masks[1:].sum(1) < 8).all() and (masks[1:].sum(1) >= 1).all()
    kept = masks.sum(1).double()
    cosine = 1 - kept / torch.sqrt(kept * 8)
    torch.testing.assert_close(weights, torch.sqrt(torch.exp(-((cosine * 100) ** 2) / 25**2)))


def test_surrogate_recovers_a_linear_function_and_reports_fit():
    masks, weights = lime_samples(6, 300, seed=0)
    coef = torch.tensor([1.0, 0.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    values = (masks.double() @ coef + 0.7).unsqueeze(1)
    got, intercept, r2 = fit_surrogate(masks, values, weights, alpha=0.0)
    torch.testing.assert_close(got[0], coef)
    assert abs(float(intercept[0]) - 0.7) < 1e-8 and float(r2[0]) > 0.999999
    sparse, _, _ = fit_surrogate(masks, values, weights, alpha=0.05)
    assert (sparse[0] == 0).sum() >= 2  # the Lasso zeroes the irrelevant features


def test_lime_on_the_model(tiny_model):
    res = attribute(tiny_model, "w3 w1 w4 w1 w5", "w9", method="lime", n_samples=300, alpha=0.0, warn=False)
    assert res.scores.shape == (1, 6) and res.scores[0, 0] == 0
    assert 0.0 <= res.metadata["r2"][0] <= 1.0
