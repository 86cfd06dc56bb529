"""The circuit result: scored edges over a graph plus the selected edge set, never mutated.

``top_n(n)`` and ``threshold(t)`` return *new* circuits; ``to_json``/``from_json`` round-trip;
``to_networkx`` gives a ``DiGraph`` of the selected edges; ``plot`` draws it by layer, and
``save_figure`` writes SVG/PNG (matplotlib + networkx, offline).

Example:
    >>> import mechinterp
    >>> from mechinterp.circuits import discover
    >>> model = mechinterp.load("zoo:tracr-frac-prevs")
    >>> task = mechinterp.tasks.load("tracr-frac-prevs", model, n=16)
    >>> c = discover(model, task, method="eap", ablation="zero").top_n(5)
    >>> sorted(c.edges())[:2]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from mechinterp.circuits.graph import Graph
from mechinterp.core.results import AbstractResult, decode, encode, warn_unknown_keys
from mechinterp.errors import MechinterpError

__all__ = ["Circuit"]


@dataclass(frozen=True, eq=False)
class Circuit(AbstractResult):
    """Edge scores and a selected edge set over a model's :class:`Graph`.

    Attributes:
        graph: the graph the scores index.
        scores: ``[n_senders, n_receivers]`` edge scores (0 off the real edges); larger
            ``|score|`` = more important. Sign: first-order change of the metric when the
            edge is patched (ACDC: the largest threshold at which the edge survives).
        selected: ``[n_senders, n_receivers]`` bool, the edges in the circuit.
        method / ablation / task / model: provenance.
        info: method details (ACDC sweep, timings, metric values).
    """

    graph: Graph
    scores: Float[Tensor, "n_senders n_receivers"]
    selected: Bool[Tensor, "n_senders n_receivers"]
    method: str = ""
    ablation: str = ""
    task: str = ""
    model: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    # ----- selection (new objects) -------------------------------------------------------
    def _with(self, selected: Tensor, **info: Any) -> Circuit:
        return dataclasses.replace(self, selected=selected & self.graph.real, info={**self.info, **info})

    def top_n(self, n: int) -> Circuit:
        """A new circuit with the ``n`` edges of largest ``|score|`` (ties broken by matrix order)."""
        if n < 0:
            raise MechinterpError(f"n must be non-negative (got {n}).")
        flat = torch.where(self.graph.real, self.scores.abs(), torch.full_like(self.scores, -1.0)).flatten()
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[torch.argsort(flat, descending=True, stable=True)[: min(n, self.graph.n_edges)]] = True
        return self._with(keep.view_as(self.scores), selection=f"top_n({n})")

    def threshold(self, t: float) -> Circuit:
        """A new circuit with the edges whose ``|score| >= t``."""
        return self._with(self.scores.abs() >= t, selection=f"threshold({t})")

    def with_edges(self, edges: Any) -> Circuit:
        """A new circuit selecting exactly ``edges`` (``(sender, receiver)`` names)."""
        return self._with(self.graph.edge_mask(edges), selection="explicit")

    # ----- views ---------------------------------------------------------------------------
    @property
    def n_edges(self) -> int:
        return int(self.selected.sum())

    def edges(self) -> list[tuple[str, str, float]]:
        """Selected edges as ``(sender, receiver, score)``, by decreasing ``|score|``."""
        rows, cols = torch.nonzero(self.selected, as_tuple=True)
        out = [(self.graph.senders[i], self.graph.receivers[j], float(self.scores[i, j])) for i, j in zip(rows.tolist(), cols.tolist())]
        return sorted(out, key=lambda e: -abs(e[2]))

    def nodes(self) -> list[str]:
        """Nodes touched by a selected edge (receivers merged into their node: ``L1H0.q -> L1H0``)."""
        names = {s for s, _, _ in self.edges()} | {self.graph.receiver_node(r) for _, r, _ in self.edges()}
        return [n for n in self.graph.nodes if n in names]

    def node_scores(self) -> dict[str, float]:
        """Node-level view: per sender, the sum of ``|score|`` over its outgoing edges."""
        total = (self.scores.abs() * self.graph.real).sum(1)
        return {name: float(v) for name, v in zip(self.graph.senders, total)}

    def to_dataframe(self) -> Any:
        """One row per real edge: sender, receiver, score, selected."""
        import pandas as pd

        rows, cols = torch.nonzero(self.graph.real, as_tuple=True)
        return pd.DataFrame({
            "sender": [self.graph.senders[i] for i in rows.tolist()],
            "receiver": [self.graph.receivers[j] for j in cols.tolist()],
            "score": self.scores[rows, cols].tolist(),
            "selected": self.selected[rows, cols].tolist(),
        })

    def to_networkx(self) -> Any:
        """A ``networkx.DiGraph`` of the selected edges; edge attributes ``score`` and ``input`` (q/k/v)."""
        import networkx as nx

        dg = nx.DiGraph()
        for s, r, score in self.edges():
            node = self.graph.receiver_node(r)
            part = r.split(".")[1] if "." in r else ""
            if dg.has_edge(s, node):
                dg[s][node]["input"] += part
                dg[s][node]["score"] += score
            else:
                dg.add_edge(s, node, score=score, input=part)
        for _, _, d in dg.edges(data=True):  # inputs in q, k, v order, whatever the receivers' order
            d["input"] = "".join(sorted(d["input"], key="qkv".index))
        for n in dg.nodes:
            dg.nodes[n]["layer"] = _layer(n, self.graph.n_layers)
        return dg

    # ----- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "Circuit", "graph": self.graph.to_dict(), "method": self.method, "ablation": self.ablation,
            "task": self.task, "model": self.model, "scores": encode(self.scores), "selected": encode(self.selected),
            "edges": encode([[s, r, v] for s, r, v in self.edges()]), "info": encode(self.info),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Circuit:
        """Rebuild a circuit from :meth:`to_dict` output (``"edges"`` is a readable copy of the selection)."""
        if not isinstance(data, dict) or data.get("type", "Circuit") != "Circuit":
            raise MechinterpError("Circuit.from_dict needs the dict that Circuit.to_dict() wrote "
                                  f"(got {data.get('type') if isinstance(data, dict) else type(data).__name__!r}).")
        missing = [k for k in ("graph", "scores", "selected") if k not in data]
        if missing:
            raise MechinterpError(f"Circuit.from_dict: the data lacks {', '.join(map(repr, missing))}; pass the dict that to_dict() wrote.")
        warn_unknown_keys(cls, data, {f.name for f in dataclasses.fields(cls)} | {"edges"})
        return cls(
            graph=Graph.from_dict(data["graph"]), scores=decode(data["scores"]).float(),
            selected=decode(data["selected"]).bool(), method=data.get("method", ""), ablation=data.get("ablation", ""),
            task=data.get("task", ""), model=data.get("model", ""), info=decode(data.get("info", {})),
        )

    def to_json(self) -> str:
        """The circuit as a JSON string (``from_json`` reads it back)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Circuit:
        return cls.from_dict(json.loads(text))

    # ----- drawing -----------------------------------------------------------------------------
    def plot(self, ax: Any = None, max_edges: int | None = 40) -> Any:
        """Draw the selected edges, layer by layer (bottom: embed, top: logits); width ~ |score|.

        Args:
            ax: a matplotlib axis to draw into (default: a new figure sized to what is drawn).
            max_edges: draw only the ``max_edges`` selected edges of largest ``|score|`` (the title says
                "top k of n"); ``None`` draws all. Only layers with a drawn node get a row, so a circuit
                in a 30-layer model is as tall as the layers it touches, and the figure stays at most
                about 14 x 12 inches whatever the model's size: heads sit at their head index in their
                layer's row, each MLP right of its layer's heads, nodes sized to the slots.
        """
        from mechinterp.viz import pyplot
        from mechinterp.viz.graph import draw_routed_edges

        import networkx as nx

        plt = pyplot()
        shown = self if max_edges is None or self.n_edges <= max_edges else self.top_n_of_selected(max_edges)
        dg = shown.to_networkx()
        n_heads = self.graph.n_heads
        layers = sorted({_node_layer(n, self.graph.n_layers) for n in dg.nodes})
        row = {layer: i for i, layer in enumerate(layers)}  # one row per layer that has a drawn node
        pos = {}
        for n in dg.nodes:  # heads at their head index, the MLP to their right (half a row up), embed/logits centred
            layer = _node_layer(n, self.graph.n_layers)
            if n.startswith("MLP"):
                pos[n] = (float(n_heads), row[layer] + 0.45)
            elif n.startswith("L"):
                pos[n] = (float(n[1:].split("H")[1]), float(row[layer]))
            else:
                pos[n] = ((n_heads - 1) / 2 if n_heads > 1 else 0.5, float(row[layer]))
        width = min(14.0, max(5.0, 0.8 * (n_heads + 1) + 1.5))
        height = min(12.0, max(3.5, 0.6 * len(layers) + 1.5))
        made = ax is None
        if made:
            fig, ax = plt.subplots(figsize=(width, height))
        else:
            fig = ax.figure
            width, height = fig.get_size_inches()
        spacing = min((width - 1.5) / (n_heads + 1), (height - 1.5) / max(len(layers), 1))  # inches per node slot
        diameter = min(30.0, 0.75 * 72 * spacing)  # points
        size = diameter**2
        nx.draw_networkx_nodes(dg, pos, ax=ax, node_color="#f5f5f7", edgecolors="#333", node_size=size)
        nx.draw_networkx_labels(dg, pos, ax=ax, font_size=8 if diameter >= 28 else 6)
        what = f"{self.n_edges} edges" if shown is self else f"top {shown.n_edges} of {self.n_edges} edges"
        ax.set_title(f"{self.method} circuit: {what} ({self.task})")
        ax.axis("off")
        if pos:  # fixed limits and layout first: edges are routed around the nodes in display space
            xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
            ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
            ax.set_ylim(min(ys) - 0.5, max(ys) + 0.5)
        if made:
            fig.tight_layout()
        edges = [(u, v, d["score"], d["input"]) for u, v, d in dg.edges(data=True)]
        routed = draw_routed_edges(ax, pos, edges, node_diameter=diameter, arrowsize=12, label_size=7)
        if routed["labels_left_out"]:
            ax.set_title(f"{ax.get_title()}\n(q/k/v labels of {routed['labels_left_out']} edges left out where they "
                         "would overlap: see to_dataframe())", fontsize=9)
            if made:
                fig.tight_layout()
        return fig

    def top_n_of_selected(self, n: int) -> Circuit:
        """A new circuit with the ``n`` *selected* edges of largest ``|score|`` (a subset of this one)."""
        if n < 0:
            raise MechinterpError(f"n must be non-negative (got {n}).")
        flat = torch.where(self.selected, self.scores.abs(), torch.full_like(self.scores, -1.0)).flatten()
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[torch.argsort(flat, descending=True, stable=True)[: min(n, self.n_edges)]] = True
        return self._with(keep.view_as(self.scores), selection=f"top {n} of the selected")

    def save_figure(self, path: str | Path, max_edges: int | None = 40) -> Path:
        """Write the drawn graph (top ``max_edges`` edges, see :meth:`plot`) as ``.svg`` or ``.png``."""
        from mechinterp.core.atomic import save_figure
        from mechinterp.core.validation import check_writable
        from mechinterp.viz import pyplot

        path = check_writable(path, "path")
        fig = self.plot(max_edges=max_edges)
        try:
            return save_figure(fig, path, bbox_inches="tight", dpi=120)
        finally:
            pyplot().close(fig)

    def to_html(self, max_edges: int = 40, max_rows: int = 60) -> str:
        """The drawn graph (inline PNG, top ``max_edges`` edges) and a table of the top ``max_rows`` selected edges."""
        from mechinterp.viz import escape, figure_to_img_tag, table_html

        edges = self.edges()
        rows = [{"sender": s, "receiver": r, "score": v} for s, r, v in edges[:max_rows]]
        more = f"; table: top {len(rows)} by |score|" if len(edges) > max_rows else ""
        return (
            f"<section><h3>{escape(self.method)} circuit on {escape(self.task)} ({escape(self.model)})</h3>"
            f"<p class='muted'>{self.n_edges} of {self.graph.n_edges} edges, ablation: {escape(self.ablation)}{more}</p>"
            f"{figure_to_img_tag(self.plot(max_edges=max_edges))}{table_html(rows)}</section>"
        )


def _node_layer(node: str, n_layers: int) -> int:
    """The layer a node is drawn in: embed -1, logits ``n_layers``."""
    if node == "embed":
        return -1
    if node == "logits":
        return n_layers
    return int(node[3:]) if node.startswith("MLP") else int(node[1:].split("H")[0])


def _layer(node: str, n_layers: int) -> float:
    """Drawing height of a node: embed 0, heads l + 1, MLPs l + 1.5, logits n_layers + 1."""
    if node == "embed":
        return 0.0
    if node == "logits":
        return n_layers + 1.0
    if node.startswith("MLP"):
        return int(node[3:]) + 1.5
    return int(node[1:].split("H")[0]) + 1.0
