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

__all__ = ["draw_routed_edges", "edge_graph_figure", "node_row"]

#: curvatures tried, in order, for an edge (matplotlib ``arc3`` ``rad``); the first that clears every
#: node other than its two ends is used, else the one that passes farthest from them
RADS = (0.08, -0.08, 0.2, -0.2, 0.32, -0.32, 0.45, -0.45, 0.6, -0.6, 0.8, -0.8)
#: label positions tried along an edge (0 = sender, 1 = receiver)
LABEL_AT = (0.5, 0.35, 0.65, 0.25, 0.75, 0.15, 0.85)


def _bezier(p1: Any, p2: Any, rad: float, t: Any) -> Any:
    """Points of matplotlib's ``arc3,rad=rad`` curve from ``p1`` to ``p2`` (display coordinates) at ``t``."""
    import numpy as np

    (x1, y1), (x2, y2) = p1, p2
    control = np.array([(x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1)])
    t = np.asarray(t, dtype=float)[:, None]
    return (1 - t) ** 2 * np.asarray(p1) + 2 * (1 - t) * t * control + t**2 * np.asarray(p2)


def draw_routed_edges(
    ax: Any,
    pos: dict[str, tuple[float, float]],
    edges: Sequence[tuple[str, str, float, str]],
    *,
    node_diameter: float,
    arrowsize: float = 12,
    label_size: float = 7,
) -> dict[str, Any]:
    """Draw ``(sender, receiver, score, label)`` edges, each curved to miss the nodes it does not join.

    Straight or evenly curved edges between rows that are not adjacent run through the nodes
    of the rows between; here each edge takes the first curvature of :data:`RADS` that keeps
    it ``0.6 ×`` a node diameter clear of every other node (computed in display space, so the
    axes limits and the figure layout must be final). Width ~ ``|score|``; blue positive, red
    negative. Labels (q/k/v) sit on their edge at the first of :data:`LABEL_AT` where they
    overlap no node and no other label; a label that fits nowhere is left out and counted.

    Args:
        ax: the axes, with its limits and the figure's layout already fixed.
        pos: node name -> data coordinates; every node in ``pos`` counts as an obstacle.
        node_diameter: the nodes' diameter in points (as drawn with ``node_size = d**2``).

    Returns:
        ``{"rads": {(u, v): rad}, "blocked": [edges that clear no node], "labels_left_out": n}``.
    """
    import numpy as np
    from matplotlib.patches import FancyArrowPatch

    fig = ax.figure
    to_px = ax.transData.transform
    px = {n: to_px(p) for n, p in pos.items()}
    radius = node_diameter / 2 * fig.dpi / 72
    t = np.linspace(0.0, 1.0, 60)
    top = max((abs(e[2]) for e in edges), default=1.0) or 1.0
    rads, blocked = {}, []
    for u, v, score, _ in edges:
        others = np.array([px[n] for n in pos if n not in (u, v)]).reshape(-1, 2)
        best, best_gap = RADS[0], -np.inf
        for rad in RADS:
            curve = _bezier(px[u], px[v], rad, t)
            gap = np.min(np.linalg.norm(curve[:, None] - others[None], axis=-1)) if len(others) else np.inf
            if gap > best_gap:
                best, best_gap = rad, gap
            if gap >= 1.2 * radius:
                break
        if best_gap < radius:
            blocked.append((u, v))
        rads[(u, v)] = best
        ax.add_patch(FancyArrowPatch(
            pos[u], pos[v], connectionstyle=f"arc3,rad={best}", arrowstyle="-|>", mutation_scale=arrowsize,
            linewidth=0.6 + 3.5 * abs(score) / top, color="#c0392b" if score < 0 else "#2c7fb8",
            shrinkA=node_diameter / 2 + 1, shrinkB=node_diameter / 2 + 1, zorder=1,
        ))
    left_out = _place_labels(ax, px, pos, edges, rads, radius, label_size)
    return {"rads": rads, "blocked": blocked, "labels_left_out": left_out}


def _place_labels(ax: Any, px: dict[str, Any], pos: dict[str, Any], edges: Sequence[tuple[str, str, float, str]],
                  rads: dict[Any, float], radius: float, size: float) -> int:
    """Edge labels where they overlap no node and no placed label; returns how many fit nowhere."""
    import numpy as np

    renderer = ax.figure.canvas.get_renderer()
    to_data = ax.transData.inverted().transform
    taken = [t.get_window_extent(renderer) for t in ax.texts]  # node labels
    centres = np.array(list(px.values())).reshape(-1, 2)
    left_out = 0
    for u, v, _, label in edges:
        if not label:
            continue
        placed = False
        for at in LABEL_AT:
            xy = _bezier(px[u], px[v], rads[(u, v)], [at])[0]
            text = ax.text(*to_data(xy), label, fontsize=size, ha="center", va="center", zorder=3,
                           bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85})
            box = text.get_window_extent(renderer).padded(1)
            near = np.abs(centres - [[(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2]])
            hits_node = bool(np.any((near[:, 0] < radius + box.width / 2) & (near[:, 1] < radius + box.height / 2)))
            if not hits_node and not any(box.overlaps(b) for b in taken):
                taken.append(box)
                placed = True
                break
            text.remove()
        left_out += not placed
    return left_out


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
    data = list(dg.edges(data=True))
    nx.draw_networkx_nodes(dg, pos, ax=ax, node_color="#f5f5f7", edgecolors="#333", node_size=700)
    nx.draw_networkx_labels(dg, pos, ax=ax, font_size=7)
    ax.set_yticks(range(len(rows)), labels=[label for _, label in rows], fontsize=8)
    ax.tick_params(left=False, bottom=False, labelbottom=False, labelleft=True)  # networkx hides them
    for side in ax.spines.values():
        side.set_visible(False)
    xs = [p[0] for p in pos.values()] or [0.0]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()  # layout first: the edges are routed around the nodes in display space
    draw_routed_edges(ax, pos, [(u, v, d["score"], d["input"]) for u, v, d in data], node_diameter=700**0.5,
                      arrowsize=10, label_size=6)
    return fig
