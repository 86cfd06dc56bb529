"""EAP is the edge-mask gradient at 0; node attribution is its row sum; IG axioms; EAP-IG with 1 step.

Each runs on the LayerNorm model and on the grouped-query-attention Llama-style model.
"""

from __future__ import annotations

import pytest
import torch

from mechinterp.circuits import (
    eap_ig_activations_scores,
    eap_ig_inputs_scores,
    eap_scores,
    mask_gradient,
    node_attribution,
    patch_edges,
)


def _close(a, b, rtol=1e-4):
    return torch.allclose(a, b, atol=rtol * float(b.abs().max()))


@pytest.mark.parametrize("fixture", ["tiny_setup", "tiny_gqa"])
def test_eap_equals_mask_gradient_at_zero(fixture, request):
    model, setup, metric = request.getfixturevalue(fixture)
    eap = eap_scores(model, setup, metric)
    assert _close(eap, mask_gradient(model, setup, metric, at=0.0))
    assert eap.abs().sum() > 0 and (eap[~setup.graph.real] == 0).all()


@pytest.mark.parametrize("fixture", ["tiny_setup", "tiny_gqa"])
def test_eap_matches_finite_difference_of_the_mask(fixture, request):
    model, setup, metric = request.getfixturevalue(fixture)
    g = setup.graph
    eap = eap_scores(model, setup, metric)
    i, j = divmod(int(eap.abs().argmax()), g.n_receivers)
    eps = 1e-2
    mask = torch.zeros(2, *g.real.shape)
    mask[0, i, j], mask[1, i, j] = eps, -eps
    out = patch_edges(model, setup, mask)
    fd = (metric(out[0]).mean() - metric(out[1]).mean()) / (2 * eps)
    assert abs(float(fd) - float(eap[i, j])) < 1e-3 * abs(float(eap[i, j])) + 1e-4


@pytest.mark.parametrize("fixture", ["tiny_setup", "tiny_gqa"])
def test_node_attribution_is_the_row_sum_of_eap(fixture, request):
    model, setup, metric = request.getfixturevalue(fixture)
    assert _close(node_attribution(model, setup, metric), eap_scores(model, setup, metric).sum(1))


@pytest.mark.parametrize("fixture", ["tiny_setup", "tiny_gqa"])
def test_eap_ig_inputs_with_one_step_is_eap(fixture, request):
    model, setup, metric = request.getfixturevalue(fixture)
    assert _close(eap_ig_inputs_scores(model, setup, metric, steps=1), eap_scores(model, setup, metric))


@pytest.mark.parametrize("fixture", ["tiny_setup", "tiny_gqa"])
def test_eap_ig_activations_completeness_per_layer(fixture, request):
    """Each sender layer's edges sum to the effect of patching that layer's outputs (midpoint rule)."""
    from mechinterp.circuits.gradients import sender_layers

    model, setup, metric = request.getfixturevalue(fixture)
    g = setup.graph
    scores = eap_ig_activations_scores(model, setup, metric, steps=24)
    groups = sender_layers(g)
    masks = [torch.zeros(g.real.shape)]
    for rows in groups:
        m = torch.zeros(g.real.shape)
        m[rows] = 1.0
        masks.append(m * g.real)
    values = [float(metric(row).mean()) for row in patch_edges(model, setup, torch.stack(masks))]
    for k, rows in enumerate(groups):
        total = values[k + 1] - values[0]
        assert abs(float(scores[rows].sum()) - total) < 0.005 * abs(total) + 1e-4, (rows, float(scores[rows].sum()), total)
