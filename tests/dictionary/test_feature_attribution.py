"""Feature EAP is the gradient of the latent-mask objective at 0 (as edge EAP is the edge-mask gradient,
tests/circuits/test_gradients.py), matches its finite difference, and tracks actual patching where effects are small."""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.hooks import assert_no_hooks
from mechinterp.dictionary import FeatureAttribution, feature_attribution, feature_patch, latent_mask_gradient
from mechinterp.dictionary.feature_attribution import latent_mask_metric
from mechinterp.dictionary.feature_inputs import latent_sources
from mechinterp.errors import MechinterpError, ShapeMismatchError
from mechinterp.patching import prepare_patch_inputs

from .conftest import make_sae, make_transcoder


def _close(a, b, rtol=1e-4):
    return torch.allclose(a, b, atol=rtol * float(b.abs().max()))


@pytest.fixture
def saes(tiny_model):
    """Two SAEs at two sites (an upstream residual one and a downstream MLP-output one)."""
    return [make_sae(tiny_model, "blocks.0.hook_resid_post", seed=0), make_sae(tiny_model, "blocks.1.hook_mlp_out", seed=1)]


@pytest.mark.parametrize(("ablation", "transcoder"), [(None, False), ("mean", False), (None, True)])
def test_feature_eap_equals_latent_mask_gradient_at_zero(tiny_model, pair, saes, ablation, transcoder):
    clean, corrupted, metric = pair
    if transcoder:  # an SAE upstream, a transcoder over the last MLP downstream
        saes = [saes[0], make_transcoder(tiny_model)]
    eap = feature_attribution(tiny_model, saes, clean, corrupted, metric, ablation=ablation)
    grad = latent_mask_gradient(tiny_model, saes, clean, corrupted, metric, at=0.0, ablation=ablation)
    assert isinstance(eap, FeatureAttribution) and eap.hooks == ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"]
    for a, b in zip(eap.scores, grad.scores):
        assert a.shape == (8, 64) and _close(a, b)
        assert a.abs().sum() > 0
    assert _close(eap.error_scores, grad.error_scores) and eap.error_scores.abs().sum() > 0
    assert eap.base_value == pytest.approx(grad.base_value, abs=1e-5)
    assert_no_hooks(tiny_model)


def _objective(model, saes, clean, corrupted, metric):
    inputs = prepare_patch_inputs(model, clean, corrupted, metric)
    src = latent_sources(model, saes, inputs, direction="denoising", ablation=None)

    def value(masks):
        with torch.no_grad():
            return float(latent_mask_metric(model, saes, src, metric, masks))

    def zeros():
        return [(torch.zeros(8, s.d_sae), torch.zeros(8)) for s in saes]

    return value, zeros


def test_feature_eap_matches_finite_difference_of_the_mask(tiny_model, pair, saes):
    clean, corrupted, metric = pair
    eap = feature_attribution(tiny_model, saes, clean, corrupted, metric)
    value, zeros = _objective(tiny_model, saes, clean, corrupted, metric)
    eps = 1e-2
    for s in range(2):  # the largest latent node of each SAE, and each SAE's largest error node
        p, i = divmod(int(eap.scores[s].abs().argmax()), 64)
        up, down = zeros(), zeros()
        up[s][0][p, i], down[s][0][p, i] = eps, -eps
        fd = (value(up) - value(down)) / (2 * eps)
        assert fd == pytest.approx(float(eap.scores[s][p, i]), rel=2e-3, abs=1e-4)
        p = int(eap.error_scores[s].abs().argmax())
        up, down = zeros(), zeros()
        up[s][1][p], down[s][1][p] = eps, -eps
        fd = (value(up) - value(down)) / (2 * eps)
        assert fd == pytest.approx(float(eap.error_scores[s][p]), rel=2e-3, abs=1e-4)


def test_mask_objective_at_one_is_feature_patching(tiny_model, pair, saes):
    clean, corrupted, metric = pair
    sae = saes[0]
    value, zeros = _objective(tiny_model, [sae], clean, corrupted, metric)
    assert value(zeros()) == pytest.approx(float(metric(tiny_model(corrupted).detach()).mean()), abs=1e-5)
    res = feature_patch(tiny_model, sae, clean, corrupted, metric, latents=[2, 9, 40], normalise=False)
    for j, i in enumerate([2, 9, 40]):
        masks = zeros()
        masks[0][0][:, i] = 1.0
        assert value(masks) == pytest.approx(float(res.raw[j]), abs=1e-5)


def test_feature_eap_tracks_patching_where_effects_are_small(tiny_model, pair, saes):
    # One token differs; each latent's patch moves the metric a little, so the first-order estimate is close.
    clean, corrupted, metric = pair
    sae = saes[0]
    eap = feature_attribution(tiny_model, sae, clean, corrupted, metric).by_latent()
    exact = feature_patch(tiny_model, sae, clean, corrupted, metric, normalise=False)
    effect = exact.raw - exact.base_value
    assert torch.corrcoef(torch.stack([eap, effect]))[0, 1] > 0.95
    moved = effect.abs() > 1e-6
    assert moved.sum() >= 5
    assert (eap - effect).abs().max() < 0.2 * effect.abs().max()
    assert (torch.sign(eap[moved]) == torch.sign(effect[moved])).float().mean() > 0.8


def test_integrated_gradients_over_the_masks_are_complete(tiny_model, pair, saes):
    # Every node moved all the way to the source is the source run: the IG scores sum to m(clean) - m(corrupted).
    clean, corrupted, metric = pair
    res = feature_attribution(tiny_model, saes, clean, corrupted, metric, ig_steps=16)
    gap = res.target_value - res.base_value
    assert res.base_value == pytest.approx(float(metric(tiny_model(corrupted).detach()).mean()), abs=1e-5)
    assert res.total() == pytest.approx(gap, rel=1e-2)
    one = feature_attribution(tiny_model, saes, clean, corrupted, metric, ig_steps=1)  # the gradient at 1/2
    half = latent_mask_gradient(tiny_model, saes, clean, corrupted, metric, at=0.5)
    assert _close(one.scores[1], half.scores[1]) and _close(one.error_scores, half.error_scores)
    eap = feature_attribution(tiny_model, saes, clean, corrupted, metric)
    assert abs(res.total() - gap) < abs(eap.total() - gap)  # closer than the first-order estimate
    with pytest.raises(MechinterpError, match="ig_steps"):
        feature_attribution(tiny_model, saes, clean, corrupted, metric, ig_steps=0)


def test_attribution_ranks_nodes_and_bad_inputs(tiny_model, pair, saes):
    clean, corrupted, metric = pair
    res = feature_attribution(tiny_model, saes, clean, corrupted, metric)
    top = res.top(5)
    assert len(top) == 5 and abs(top[0]["score"]) >= abs(top[-1]["score"])
    assert "error" in {r["latent"] for r in res.top(200)}  # error nodes are ranked with the latents
    with pytest.raises(ShapeMismatchError):
        feature_attribution(tiny_model, saes, clean, corrupted, lambda logits: logits[:, -1])
    with pytest.raises(MechinterpError, match="same hook"):
        feature_attribution(tiny_model, [saes[0], saes[0]], clean, corrupted, metric)
    with pytest.raises(ShapeMismatchError, match="sae"):
        feature_attribution(tiny_model, make_sae(tiny_model, "blocks.0.hook_resid_post", d_in=40), clean, corrupted, metric)
    with pytest.raises(MechinterpError, match="saes"):
        feature_attribution(tiny_model, "not an sae", clean, corrupted, metric)
    assert_no_hooks(tiny_model)
