"""The circuit as an interactive, self-contained SVG: hover an edge for its score, click a node for its details,
a slider for the number of edges with the circuit's faithfulness at that size.

Layout (:func:`layout`): one row per layer part the drawn edges use (``embed`` at the bottom,
then each layer's heads and its MLP, ``logits`` at the top), heads at their head index.
Every edge is a chain of cubic Bézier pieces that leave and enter each row vertically; where
an edge crosses a row it passes through a gap between that row's nodes, so no edge runs
through a node (:func:`crossings` checks it, and the tests assert it on 4 × 4 and 30 × 9
layouts). Edges enter a head at the left (``q``), middle (``k``) or right (``v``) of its
bottom; colour is the score's sign (red: patching the edge lowers the metric, blue: raises
it), width ∝ ``|score|``. The page needs no network: plain SVG and a
few lines of JavaScript.

Example:
    >>> edges = [("embed", "L0H1.v", 0.5), ("L0H1", "L1H0.k", 1.0), ("L1H0", "logits", -2.0)]
    >>> html = graph_html(edges, n_heads=4, sizes=[1, 2, 3], faithfulness=[0.2, 0.5, 0.9])
    >>> "<svg" in html and "input type='range'" in html
    True
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from mechinterp.viz import escape

__all__ = ["GraphLayout", "layout", "crossings", "graph_html", "legend_html"]

#: node radius, slot width (px)
RADIUS, SLOT = 14.0, 56.0
#: where each head input enters the node, as a fraction of the radius (left, middle, right)
INPUT_OFFSET = {"q": -0.6, "k": 0.0, "v": 0.6}
POSITIVE, NEGATIVE = "#2c7fb8", "#c0392b"


def _parse(name: str) -> tuple[tuple[int, int], str, str]:
    """``(row key, node name, input)`` of a sender or receiver name."""
    node, _, inp = name.partition(".")
    if node == "embed":
        return (-1, 0), node, inp
    if node == "logits":
        return (10**9, 0), node, inp
    if node.startswith("MLP"):
        return (int(node[3:]), 1), node, inp
    if node.startswith("L") and "H" in node:
        return (int(node[1:].split("H")[0]), 0), node, inp
    return (10**8, 0), node, inp


def _row_label(key: tuple[int, int]) -> str:
    layer, part = key
    return "embed" if layer == -1 else "logits" if layer == 10**9 else f"MLP {layer}" if part else f"L{layer} heads"


@dataclass
class GraphLayout:
    """Node centres, edge paths (lists of Bézier pieces) and the picture's size."""

    nodes: dict[str, tuple[float, float]]
    rows: list[tuple[str, float]]
    paths: list[list[tuple[tuple[float, float], ...]]]
    width: float
    height: float
    row_nodes: dict[float, list[float]] = field(default_factory=dict)

    def svg_path(self, i: int) -> str:
        pieces = self.paths[i]
        (x0, y0) = pieces[0][0]
        d = f"M{x0:.1f},{y0:.1f}"
        for _, c1, c2, p in pieces:
            d += f" C{c1[0]:.1f},{c1[1]:.1f} {c2[0]:.1f},{c2[1]:.1f} {p[0]:.1f},{p[1]:.1f}"
        return d


def layout(edges: list[tuple[str, str, float]], n_heads: int) -> GraphLayout:
    """Place the nodes of ``edges`` and route every edge through row gaps (see the module docstring)."""
    parsed = [(_parse(s), _parse(r)) for s, r, _ in edges]
    keys = sorted({k for (ks, _, _), (kr, _, _) in parsed for k in (ks, kr)})
    slots = max(n_heads, 1)
    width = 2 * 60.0 + SLOT * slots
    # rows far enough apart that a curve leaving a node vertically clears its row neighbours
    row_gap = max(78.0, math.sqrt(22.0 * width))
    height = 60.0 + row_gap * max(len(keys) - 1, 1) + 40.0
    y_of = {k: height - 40.0 - i * row_gap for i, k in enumerate(keys)}
    x_mid = 60.0 + SLOT * slots / 2

    def x_of(node: str) -> float:
        if node.startswith("L") and "H" in node:
            return 60.0 + SLOT * (int(node.split("H")[1]) + 0.5)
        return x_mid

    nodes: dict[str, tuple[float, float]] = {}
    for (ks, s, _), (kr, r, _) in parsed:
        nodes.setdefault(s, (x_of(s), y_of[ks]))
        nodes.setdefault(r, (x_of(r), y_of[kr]))
    row_nodes: dict[float, list[float]] = {}
    for x, y in nodes.values():
        row_nodes.setdefault(y, []).append(x)
    paths = []
    for ((ks, s, _), (kr, r, inp)) in parsed:
        x0, y0 = nodes[s][0], nodes[s][1] - RADIUS
        x1, y1 = nodes[r][0] + INPUT_OFFSET.get(inp, 0.0) * RADIUS, nodes[r][1] + RADIUS
        points = [(x0, y0)]
        between = [y_of[k] for k in keys if ks < k < kr]
        for y in between:  # y decreases upwards
            t = (y0 - y) / (y0 - y1) if y0 != y1 else 0.5
            points.append((_free_x(x0 + t * (x1 - x0), row_nodes.get(y, [])), y))
        points.append((x1, y1))
        pieces = []
        for (xa, ya), (xb, yb) in zip(points, points[1:]):
            half = (ya - yb) / 2
            pieces.append(((xa, ya), (xa, ya - half), (xb, yb + half), (xb, yb)))
        paths.append(pieces)
    rows = [(_row_label(k), y_of[k]) for k in keys]
    return GraphLayout(nodes, rows, paths, width, height, row_nodes)


def _free_x(x: float, occupied: list[float]) -> float:
    """The x nearest to ``x`` at least half a slot from every node centre in ``occupied``."""
    for _ in range(len(occupied) + 1):
        hits = [c for c in occupied if abs(x - c) < SLOT / 2 - 1e-6]
        if not hits:
            return x
        c = hits[0]
        left, right = c - SLOT / 2, c + SLOT / 2
        x = left if abs(x - left) <= abs(x - right) else right
        if any(abs(x - o) < SLOT / 2 - 1e-6 for o in occupied):  # the nearer side is taken: try the other one
            x = right if x == left else left
    return x


def crossings(lay: GraphLayout, edges: list[tuple[str, str, float]], samples: int = 60) -> list[tuple[int, str]]:
    """``(edge index, node)`` for every edge that passes through a node other than its own two ends."""
    import numpy as np

    names = list(lay.nodes)
    centres = np.array([lay.nodes[n] for n in names])  # [nodes, 2]
    t = np.linspace(0.0, 1.0, samples + 1)[:, None]
    u = 1 - t
    out = []
    for i, ((s, r, _), pieces) in enumerate(zip(edges, lay.paths)):
        p = np.array(pieces)  # [pieces, 4, 2]
        pts = (u**3 * p[:, None, 0] + 3 * u * u * t * p[:, None, 1] + 3 * u * t * t * p[:, None, 2]
               + t**3 * p[:, None, 3]).reshape(-1, 2)
        near = (np.linalg.norm(pts[:, None] - centres[None], axis=-1) < RADIUS).any(0)
        ends = {s.split(".")[0], r.split(".")[0]}
        out += [(i, names[j]) for j in np.flatnonzero(near) if names[j] not in ends]
    return out


def legend_html() -> str:
    """What colours, widths and entry points mean."""
    return (
        "<div class='legend'><b>Legend.</b> "
        "An edge's score is the change of the task metric when that edge alone carries its corrupted-run value. "
        f"<span style='color:{NEGATIVE}'>━ red</span>: negative score, patching the edge lowers the metric "
        "(the edge carries the behaviour); "
        f"<span style='color:{POSITIVE}'>━ blue</span>: positive score, patching it raises the metric (the edge works "
        "against the behaviour). Width ∝ |score|. An edge enters a head at the left of its bottom for the query (q), the middle for the "
        "key (k), the right for the value (v); MLPs and the logits take one input. Rows: the embeddings at the "
        "bottom, each used layer's heads (LxHy) and MLP, the logits at the top. Hover an edge for its score; "
        "click a node for its details.</div>"
    )


def graph_html(
    edges: list[tuple[str, str, float]],
    n_heads: int,
    sizes: list[int] | None = None,
    faithfulness: list[float] | None = None,
    node_info: dict[str, str] | None = None,
    initial: int | None = None,
    element_id: str = "circuit-graph",
) -> str:
    """The interactive graph of ``edges`` (by decreasing ``|score|``) as one HTML fragment.

    Args:
        edges: ``(sender, receiver, score)``, most important first (``Circuit.edges()``).
        n_heads: heads per layer (the width of a row).
        sizes: edge counts the slider stops at (each ≤ ``len(edges)``); default every count.
        faithfulness: the circuit's faithfulness at each of ``sizes`` (shown next to the slider).
        node_info: node name -> HTML shown when the node is clicked (a page may instead set
            ``window.mechinterpNodeInfo`` to such a mapping, in a script anywhere on the page).
        initial: the slider's starting size (default the largest).
        element_id: the id of the outer element (several graphs on one page need distinct ids).
    """
    lay = layout(edges, n_heads)
    sizes = list(sizes or range(1, len(edges) + 1))
    faith = list(faithfulness) if faithfulness is not None else [None] * len(sizes)
    start = sizes.index(initial) if initial in sizes else len(sizes) - 1
    top = max((abs(v) for _, _, v in edges), default=1.0) or 1.0
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' class='cgraph' width='{lay.width:.0f}' height='{lay.height:.0f}' "
             f"viewBox='0 0 {lay.width:.0f} {lay.height:.0f}' role='img' aria-label='circuit graph'>"]
    for label, y in lay.rows:
        parts.append(f"<text x='4' y='{y + 4:.1f}' class='rowlabel' font-size='10' fill='#777'>{escape(label)}</text>"
                     f"<line x1='52' x2='{lay.width - 4:.0f}' y1='{y:.1f}' y2='{y:.1f}' stroke='#eee'/>")
    for i, (s, r, v) in enumerate(edges):
        colour = NEGATIVE if v < 0 else POSITIVE
        w = 0.8 + 4.2 * abs(v) / top
        parts.append(f"<path class='cedge' data-rank='{i}' data-s='{escape(s.split('.')[0])}' data-r='{escape(r.split('.')[0])}' "
                     f"data-label='{escape(s)} → {escape(r)}: score {v:+.4g}' d='{lay.svg_path(i)}' fill='none' "
                     f"stroke='{colour}' stroke-width='{w:.2f}' stroke-opacity='0.75'>"
                     f"<title>{escape(s)} → {escape(r)}: score {v:+.4g} (rank {i + 1})</title></path>")
    for name, (x, y) in lay.nodes.items():
        parts.append(f"<g class='cnode' data-node='{escape(name)}' tabindex='0'><circle cx='{x:.1f}' cy='{y:.1f}' r='{RADIUS:.0f}' "
                     f"fill='#f5f5f7' stroke='#333'/><text x='{x:.1f}' y='{y + 3:.1f}' text-anchor='middle' font-size='8'>"
                     f"{escape(name.replace('MLP', 'M'))}</text><title>{escape(name)} (click for details)</title></g>")
    parts.append("</svg>")
    data = {"sizes": sizes, "faith": faith, "info": node_info or {}}
    script = _SCRIPT.replace("__ID__", element_id).replace("__DATA__", json.dumps(data).replace("</", "<\\/"))
    return (
        f"<div id='{element_id}' class='cgraph-wrap'>"
        f"<div class='cgraph-controls'><label>edges shown: <input type='range' class='cslider' min='0' max='{len(sizes) - 1}' "
        f"value='{start}' step='1'></label> <span class='cstatus'></span></div>"
        f"<div class='cgraph-body' style='display:flex;gap:16px;align-items:flex-start'>"
        f"<div style='overflow:auto;max-width:100%'>{''.join(parts)}</div>"
        f"<div class='cpanel' style='min-width:260px;max-width:420px'><p class='muted'>Click a node for its details; "
        f"hover an edge for its score.</p></div></div><div class='chover muted'>&nbsp;</div>{legend_html()}</div>"
        f"<script>{script}</script>"
    )


_SCRIPT = r"""
(function(){
  var root = document.getElementById('__ID__'); if (!root) return;
  var data = __DATA__;
  var slider = root.querySelector('.cslider'), status = root.querySelector('.cstatus');
  var panel = root.querySelector('.cpanel'), hover = root.querySelector('.chover');
  var edges = root.querySelectorAll('.cedge'), nodes = root.querySelectorAll('.cnode');
  function show(){
    var i = +slider.value, k = data.sizes[i], used = {};
    edges.forEach(function(e){ var on = +e.getAttribute('data-rank') < k;
      e.style.display = on ? '' : 'none';
      if (on) { used[e.getAttribute('data-s')] = 1; used[e.getAttribute('data-r')] = 1; } });
    nodes.forEach(function(n){ n.style.display = used[n.getAttribute('data-node')] ? '' : 'none'; });
    var f = data.faith[i];
    status.textContent = k + ' edge' + (k == 1 ? '' : 's') +
      (f === null || f === undefined ? '' : '; faithfulness ' + f.toFixed(3) + ' (1 = the full model, 0 = the corrupted run)');
    root.setAttribute('data-shown', k);
  }
  slider.addEventListener('input', show);
  edges.forEach(function(e){
    e.addEventListener('mouseenter', function(){ hover.textContent = e.getAttribute('data-label');
      e.setAttribute('stroke-opacity', '1'); root.setAttribute('data-hovered', e.getAttribute('data-rank')); });
    e.addEventListener('mouseleave', function(){ e.setAttribute('stroke-opacity', '0.75'); });
  });
  nodes.forEach(function(n){
    n.addEventListener('click', function(){
      var name = n.getAttribute('data-node'), k = data.sizes[+slider.value], rows = [];
      edges.forEach(function(e){ if (+e.getAttribute('data-rank') < k &&
        (e.getAttribute('data-s') == name || e.getAttribute('data-r') == name)) rows.push('<li>' + e.getAttribute('data-label')
          .replace(/&/g, '&amp;').replace(/</g, '&lt;') + '</li>'); });
      var extra = (window.mechinterpNodeInfo || {})[name] || data.info[name] || '';
      panel.innerHTML = '<h4>' + name + '</h4>' + extra +
        '<p><b>Edges shown that touch it:</b></p><ul>' + rows.join('') + '</ul>';
      nodes.forEach(function(m){ m.querySelector('circle').setAttribute('stroke-width', m === n ? '3' : '1'); });
      root.setAttribute('data-selected', name);
    });
  });
  show();
})();
"""
