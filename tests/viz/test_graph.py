"""viz.graph: compact edge drawings whose edges go around the nodes they do not join."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from mechinterp.viz import edge_graph_figure  # noqa: E402
from mechinterp.viz.checks import edge_clearances, layout_problems  # noqa: E402

EDGES = [("embed", "L2H0.q", 1.0), ("embed", "L1H1.v", 0.5), ("L0H0", "L2H0.k", 0.8), ("L0H1", "logits", -0.6),
         ("L0H0", "MLP1", 0.3), ("MLP0", "L2H1.v", 0.4), ("L1H0", "logits", 0.9), ("embed", "L0H0.v", 0.2),
         ("embed", "L0H1.k", 0.2), ("L1H1", "L2H1.q", 0.5), ("MLP1", "logits", 0.3), ("embed", "MLP0", 0.3)]


def test_edges_clear_other_nodes_and_labels_do_not_collide():
    # Before: one fixed curvature for every edge; L0H0 -> L2H0 grazed L1H0 (0.92 node radii) and a q/k/v
    # label sat on a node name.
    fig = edge_graph_figure(EDGES, title="t")
    clearance = edge_clearances(fig)
    assert len(clearance) == len(EDGES) and min(clearance) > 1.0, clearance
    assert layout_problems(fig) == []
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][0] == "embed"
    plt.close(fig)
