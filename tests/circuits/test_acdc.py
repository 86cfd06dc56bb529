"""ACDC: the batched prefix search equals the one-edge-per-pass loop; the sweep scores rank the tracr circuits."""

from __future__ import annotations

import pytest
import torch

from mechinterp.circuits import DISTANCES, acdc, acdc_scores, compare_to_reference, patch_edges
from mechinterp.errors import MechinterpError


def _naive_acdc(model, setup, metric, tau, distance):
    g = setup.graph
    dist = DISTANCES[distance]
    ref = patch_edges(model, setup, torch.zeros(g.real.shape))[0]
    removed = torch.zeros(g.real.shape)
    current = float(dist(patch_edges(model, setup, removed), ref, metric)[0])
    for col in reversed(range(g.n_receivers)):
        node = g.receiver_node(g.receivers[col])
        senders = torch.nonzero(g.real[:, col]).flatten().tolist()[::-1]
        if node != "logits" and not bool(((removed[g.sender_index(node)] == 0) & g.real[g.sender_index(node)]).any()):
            removed[senders, col] = 1
            continue
        for s in senders:
            trial = removed.clone()
            trial[s, col] = 1
            d = float(dist(patch_edges(model, setup, trial), ref, metric)[0])
            if d - current < tau:
                removed, current = trial, d
    return g.real & (removed == 0)


@pytest.mark.parametrize("tau,distance", [(1e-3, "l2"), (0.05, "kl")])
def test_batched_acdc_equals_sequential_loop(frac, tau, distance):
    model, task, setup = frac
    kept, info = acdc(model, setup, task.metric, tau, distance, chunk=5)
    assert torch.equal(kept, _naive_acdc(model, setup, task.metric, tau, distance))
    assert info["passes"] < setup.graph.n_edges + 2


def test_sweep_scores_are_largest_surviving_threshold(frac):
    model, task, setup = frac
    taus = [1e-4, 1e-2, 0.3]
    scores, info = acdc_scores(model, setup, task.metric, thresholds=taus, distance="l2")
    for row in info["sweep"]:
        kept, _ = acdc(model, setup, task.metric, row["threshold"], "l2")
        assert int(kept.sum()) == row["n_edges"] and (scores[kept] >= row["threshold"]).all()
    assert set(scores.unique().tolist()) <= {0.0, *torch.tensor(taus).tolist()}
    assert compare_to_reference_from(scores, setup, task) == 1.0


def compare_to_reference_from(scores, setup, task):
    from mechinterp.circuits import Circuit

    c = Circuit(setup.graph, scores, scores != 0)
    return compare_to_reference(c, task.ground_truth.circuit)["auc"]


def test_unknown_distance_and_bad_thresholds_raise(frac):
    model, task, setup = frac
    with pytest.raises(MechinterpError, match="distance"):
        acdc(model, setup, task.metric, 0.1, "cosine")
    with pytest.raises(MechinterpError, match="thresholds"):
        acdc_scores(model, setup, task.metric, thresholds=[])


def test_batched_acdc_equals_sequential_loop_on_gqa(tiny_gqa):
    """Grouped-query attention: ACDC prunes per-head k/v edges; batched prefixes equal the one-edge loop."""
    model, setup, metric = tiny_gqa
    ref = patch_edges(model, setup, torch.zeros(setup.graph.real.shape))[0]
    empty = float(DISTANCES["kl"](patch_edges(model, setup, setup.graph.real.float()), ref, metric)[0])
    tau = 0.02 * empty
    kept, _ = acdc(model, setup, metric, tau, "kl", chunk=7)
    assert 0 < int(kept.sum()) < setup.graph.n_edges
    assert torch.equal(kept, _naive_acdc(model, setup, metric, tau, "kl"))


def test_acdc_returns_a_result_that_unpacks_as_before(frac, tmp_path):
    from mechinterp.circuits import AcdcRun

    model, task, setup = frac
    run = acdc(model, setup, task.metric, 1e-3, "l2")
    assert isinstance(run, AcdcRun)
    kept, info = run
    assert kept is run.kept and info == {"passes": run.passes, "distance": run.distance}
    g = setup.graph
    assert sorted(map(tuple, run.edges)) == sorted((g.senders[r], g.receivers[c]) for r, c in torch.nonzero(kept).tolist())
    back = AcdcRun.load(run.save(tmp_path / "run.json"))
    assert torch.equal(back.kept, kept) and back.edges == run.edges and "ACDC" in back.to_html()
