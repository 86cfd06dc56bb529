"""A compact drawing of a circuit's top edges, readable on deep models.

Drawing every layer of a 30-layer model at a fixed height per layer gives a figure several
metres tall that is mostly empty. :func:`edge_graph_figure` draws only the rows that hold a
node of the selected edges (embed at the bottom, logits at the top, each used layer's heads
on one row and its MLP on the next), so the figure's height grows with the number of
*used* rows, not with the model's depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mechinterp.viz.figures import pyplot

__all__ = ["edge_graph_figure", "node_row"]


def node_row(node: str) -> tuple[float, str]:
    """Sort key and row label of a node name (``embed``, ``L3H1``, ``L3H1.q``, ``MLP3``, ``logits``).

    Example:
        >>> node_row("L3H1.q"), node_row("MLP3"), node_row("logits")[1]
        ((3.0, 'L3 heads'), (3.5, 'MLP3'), 'logits')
    """
    name = node.split(".")[0]
    if name == "embed":
        return -1.0, "embed"
    if name == "logits":
        return float("inf"), "logits"
    if name.startswith("MLP"):
        layer = int(name[3:])
        return layer + 0.5, f"MLP{layer}"
    layer = int(name[1:].split("H")[0])
    return float(layer), f"L{layer} heads"


def edge_graph_figure(
    edges: Sequence[tuple[str, str, float]],
    *,
    title: str = "",
    row_height: float = 0.75,
    width: float | None = None,
) -> Any:
    """Draw ``(sender, receiver, score)`` edges with one row per used layer; width ~ |score|.

    Receivers such as ``"L5H2.q"`` are merged into their node (the input letter labels
    the edge). Blue edges have a positive score, red a negative one.

    Args:
        edges: the edges to draw (e.g. ``circuit.top_n(20).edges()``).
        title: the axes title.
        row_height: inches per row of nodes.
        width: figure width in inches (default: from the widest row).

    Returns:
        The matplotlib figure (height ``≈ row_height × used rows``).

    Example:
        >>> fig = edge_graph_figure([("embed", "L0H1.v", 0.5), ("L0H1", "logits", -1.0)])
        >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
        ['embed', 'L0 heads', 'logits']
    """
    import networkx as nx

    plt = pyplot()
    dg = nx.DiGraph()
    for sender, receiver, score in edges:
        node = receiver.split(".")[0]
        part = receiver.split(".")[1] if "." in receiver else ""
        if dg.has_edge(sender, node):  # q/k/v edges between the same pair: keep the largest
            if abs(score) <= abs(dg[sender][node]["score"]):
                continue
        dg.add_edge(sender, node, score=float(score), input=part)
    rows = sorted({node_row(n) for n in dg.nodes}, key=lambda r: r[0])
    row_of = {key: i for i, (key, _) in enumerate(rows)}
    by_row: dict[int, list[str]] = {}
    for n in sorted(dg.nodes, key=lambda n: (node_row(n)[0], n)):
        by_row.setdefault(row_of[node_row(n)[0]], []).append(n)
    widest = max((len(v) for v in by_row.values()), default=1)
    fig_w = width or min(16.0, max(6.0, 1.3 * widest + 2.5))
    fig_h = max(2.5, row_height * len(rows) + 1.2)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    # rows of one node zigzag left/right so edges that skip rows do not run over the nodes between them
    pos = {n: (i - (len(ns) - 1) / 2 + (0.35 * (-1) ** r if len(ns) == 1 else 0.0), r)
           for r, ns in by_row.items() for i, n in enumerate(ns)}
    top = max((abs(d["score"]) for _, _, d in dg.edges(data=True)), default=1.0) or 1.0
    data = list(dg.edges(data=True))
    nx.draw_networkx_nodes(dg, pos, ax=ax, node_color="#f5f5f7", edgecolors="#333", node_size=700)
    nx.draw_networkx_labels(dg, pos, ax=ax, font_size=7)
    nx.draw_networkx_edges(
        dg, pos, ax=ax, edgelist=[(u, v) for u, v, _ in data],
        width=[0.6 + 3.5 * abs(d["score"]) / top for _, _, d in data],
        edge_color=["#c0392b" if d["score"] < 0 else "#2c7fb8" for _, _, d in data],
        arrows=True, arrowsize=10, connectionstyle="arc3,rad=0.1", node_size=700,
    )
    labels = {(u, v): d["input"] for u, v, d in data if d["input"]}
    if labels:
        nx.draw_networkx_edge_labels(dg, pos, edge_labels=labels, ax=ax, font_size=6)
    ax.set_yticks(range(len(rows)), labels=[label for _, label in rows], fontsize=8)
    ax.tick_params(left=False, bottom=False, labelbottom=False, labelleft=True)  # networkx hides them
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
