"""Exact Shapley values (efficiency, closed forms, the shap package) and KernelSHAP vs exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechinterp.attribution import attribute, exact_shapley, kernel_shap
from mechinterp.errors import MechinterpError

TEN = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10"  # 10 features after BOS


def test_closed_forms():
    weights = torch.tensor([[0.5], [-1.0], [2.0]], dtype=torch.float64)
    phi, _ = exact_shapley(lambda m: m.double() @ weights, 3)  # additive game: φ = weights
    torch.testing.assert_close(phi[0], weights[:, 0])
    phi, _ = exact_shapley(lambda m: (m[:, 0] & m[:, 1]).double().unsqueeze(1), 3)  # unanimity game of {0, 1}
    torch.testing.assert_close(phi[0], torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))


def test_exact_shapley_efficiency_on_the_model(tiny_model):
    res = attribute(tiny_model, TEN, "w4", method="shapley", warn=False)
    gap = res.metadata["target_values"][0] - res.metadata["baseline_values"][0]
    assert float(res.scores.double().sum()) == pytest.approx(gap, abs=1e-5)
    assert res.scores[0, 0] == 0 and res.scores.shape == (1, 11)


def test_exact_shapley_matches_the_shap_package(tiny_model):
    import shap

    from mechinterp.attribution.base import prepare_prompt
    from mechinterp.attribution.forward import MaskedScorer

    prep = prepare_prompt(tiny_model, "w1 w2 w3 w4 w5 w6", "w4")
    scorer = MaskedScorer(tiny_model, prep.target, [[i] for i in range(1, 7)], tiny_model.tokenizer.pad_token_id)
    ours, _ = exact_shapley(scorer, 6)
    explainer = shap.KernelExplainer(lambda z: scorer(torch.from_numpy(z > 0.5))[:, 0].numpy(), np.zeros((1, 6)))
    ref = explainer.shap_values(np.ones((1, 6)), nsamples=200, silent=True)
    np.testing.assert_allclose(ours[0].numpy(), np.asarray(ref).reshape(-1), atol=1e-5)


def test_kernel_shap_agrees_with_exact_on_ten_tokens(tiny_model):
    exact = attribute(tiny_model, TEN, "w4", method="shapley", warn=False)
    approx = attribute(tiny_model, TEN, "w4", method="kernel_shap", n_samples=600, warn=False)
    assert approx.metadata["exact"] is False
    corr = np.corrcoef(exact.scores[0, 1:].numpy(), approx.scores[0, 1:].numpy())[0, 1]
    assert corr > 0.95
    assert float(approx.scores.sum()) == pytest.approx(float(exact.scores.sum()), abs=1e-4)  # efficiency by construction


def test_kernel_shap_is_exact_with_a_full_budget():
    weights = torch.randn(6, 2, dtype=torch.float64)
    value = lambda m: m.double() @ weights + 3.0 * (m[:, 0] & m[:, 2]).double().unsqueeze(1)  # noqa: E731
    exact, _ = exact_shapley(value, 6)
    full, info = kernel_shap(value, 6, n_samples=100)
    assert info["exact"]
    torch.testing.assert_close(full, exact)


def test_too_many_features_for_exact_raises(tiny_model):
    with pytest.raises(MechinterpError, match="kernel_shap"):
        attribute(tiny_model, TEN, "w4", method="shapley", max_features=8)


def test_word_and_span_grouping(tiny_model):
    spans = {"context": (1, 6), "question": (6, 11)}
    res = attribute(tiny_model, TEN, "w4", method="shapley", features=spans, warn=False)
    assert res.tokens == ["context", "question"]
    tok = attribute(tiny_model, TEN, "w4", method="shapley", warn=False)
    gap = tok.metadata["target_values"][0] - tok.metadata["baseline_values"][0]
    assert float(res.scores.sum()) == pytest.approx(gap, abs=1e-5)
