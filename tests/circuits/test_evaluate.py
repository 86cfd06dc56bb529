"""Faithfulness (full = 1, empty = 0), curve areas by the trapezoid rule, ROC AUC equal to sklearn's."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from mechinterp.circuits import compare_to_reference, discover, faithfulness, faithfulness_curve, reference_mask


def test_full_is_one_empty_is_zero(tiny_setup):
    model, setup, metric = tiny_setup
    g = setup.graph
    f = faithfulness(model, setup, metric, torch.stack([g.real, torch.zeros_like(g.real)]))
    assert torch.allclose(f, torch.tensor([1.0, 0.0]), atol=1e-5)


def test_curve_areas_and_sizes(frac):
    model, task, setup = frac
    c = discover(model, task, "exact", "zero", setup=setup)
    curve = faithfulness_curve(model, setup, task.metric, c, fractions=[0.1, 0.25, 0.5, 1.0])
    n = setup.graph.n_edges
    assert curve.n_edges == [int(np.ceil(x * n)) for x in [0.1, 0.25, 0.5, 1.0]]
    f = np.array(curve.faithfulness)
    assert abs(f[-1] - 1) < 1e-5 and abs(f[1] - 1) < 1e-5  # 6 edges contain the 5-edge circuit
    x = np.array(curve.fractions)
    assert abs(curve.cpr - float(((f[1:] + f[:-1]) / 2 * np.diff(x)).sum())) < 1e-9
    g = np.abs(1 - f)
    assert abs(curve.cmd - float(((g[1:] + g[:-1]) / 2 * np.diff(x)).sum())) < 1e-9
    assert "CPR" in curve.to_html()


def test_auc_precision_recall(frac):
    model, task, setup = frac
    c = discover(model, task, "eap", "zero", setup=setup)
    ref = reference_mask(setup.graph, task.ground_truth.circuit)
    real = setup.graph.real
    stats = compare_to_reference(c.top_n(4), task.ground_truth.circuit)
    assert stats["auc"] == roc_auc_score(ref[real].numpy(), c.scores.abs()[real].numpy())
    assert stats["precision"] == 1.0 and stats["recall"] == 4 / 5


def test_sweep_auc_is_the_acdc_roc_from_one_point_per_threshold():
    from mechinterp.circuits import sweep_auc

    assert sweep_auc([(0.0, 0.5), (0.5, 1.0)]) == (0.875, 0.75)
    assert sweep_auc([(0.5, 0.5)]) == (0.5, 0.25)  # the chance line through one point
    assert sweep_auc([(0.2, 0.9), (0.3, 0.5)])[0] == sweep_auc([(0.2, 0.9)])[0]  # dominated points drop


def test_acdc_auc_uses_its_sweep(frac):
    model, task, setup = frac
    c = discover(model, task, "acdc", "zero", setup=setup, distance="l2", thresholds=[1e-3, 0.1])
    stats = compare_to_reference(c, task.ground_truth.circuit)
    assert [len(row["kept"]) for row in c.info["sweep"]] == [row["n_edges"] for row in c.info["sweep"]]
    assert stats["auc"] == 1.0 and stats["auc_pessimistic"] == 1.0 and "auc_ranking" in stats
