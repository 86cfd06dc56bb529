"""Adaptive composite Gauss–Legendre: exact on a sharp integrand with a known integral, within budget."""

from __future__ import annotations

import pytest
import torch

from mechinterp.attribution import attribute, quadrature
from mechinterp.attribution.adaptive import adaptive_gauss_legendre
from mechinterp.errors import MechinterpError

SHARES = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)


def _integrand(alphas: torch.Tensor, centre: float = 0.77, width: float = 0.01):
    """F(α) = a logistic switch at ``centre`` (like the attention switch on toy-lm's zero-baseline path, α ≈ 0.6–0.8),
    split into 3 terms."""
    f = torch.sigmoid((alphas - centre) / width)
    df = f * (1 - f) / width
    return f.view(-1, 1), SHARES.view(1, 1, -1) * df.view(1, -1, 1)  # [k, 1], [1, k, 3]


def test_adaptive_reaches_the_tolerance_on_a_sharp_switch_where_fixed_gauss_legendre_does_not():
    exact = SHARES * float(torch.sigmoid(torch.tensor(0.23 / 0.01)) - torch.sigmoid(torch.tensor(-0.77 / 0.01)))
    res = adaptive_gauss_legendre(_integrand, budget=256, tolerance=1e-4)
    assert res.rows <= 256 and res.rounds > 1
    torch.testing.assert_close(res.integral[0], exact, rtol=2e-4, atol=0)
    alphas, weights = quadrature(64, "gausslegendre")  # the fixed rule with 64 nodes misses by more than 1e-4
    _, terms = _integrand(alphas.double())
    fixed = torch.einsum("tkn,k->tn", terms, weights.double())[0]
    assert float((fixed.sum() - exact.sum()).abs() / exact.sum()) > 1e-4


def test_adaptive_never_exceeds_its_budget():
    res = adaptive_gauss_legendre(_integrand, budget=96, tolerance=0.0)  # unattainable: runs to the budget
    assert res.rows <= 96
    assert res.end_values[0, 0] > 0.99 and res.end_values[1, 0] < 0.01


def test_ig_adaptive_rule_reports_its_delta(tiny_model):
    res = attribute(tiny_model, "w1 w5 w9 w2 w7 w3", "w4", method="ig", rule="adaptive", n_steps=128, baseline="pad", warn=False)
    gap = res.metadata["target_values"][0] - res.metadata["baseline_values"][0]
    assert res.metadata["convergence_delta"][0] == pytest.approx(float(res.scores.sum()) - gap, abs=1e-5)
    assert res.metadata["relative_delta"][0] < 0.01
    assert res.metadata["n_gradient_rows"] <= 128 and res.metadata["panel_edges"][0] == 0.0
    ref = attribute(tiny_model, "w1 w5 w9 w2 w7 w3", "w4", method="ig", n_steps=256, baseline="pad", warn=False)
    torch.testing.assert_close(res.scores, ref.scores, atol=0.02 * float(ref.scores.abs().max()), rtol=0)


def test_adaptive_rule_errors():
    with pytest.raises(MechinterpError, match="adaptive"):
        quadrature(16, "adaptive")


def test_adaptive_needs_a_budget(tiny_model):
    with pytest.raises(MechinterpError, match="n_steps >= 8"):
        attribute(tiny_model, "w1 w5", "w4", method="ig", rule="adaptive", n_steps=4, warn=False)
