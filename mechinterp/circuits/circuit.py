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
from mechinterp.core.results import AbstractResult, decode, encode
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

    def patch_mask(self) -> Float[Tensor, "n_senders n_receivers"]:
        """The patch mask that runs this circuit alone: 1 on every real edge not selected."""
        return (self.graph.real & ~self.selected).float()

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
        for n in dg.nodes:
            dg.nodes[n]["layer"] = _layer(n, self.graph.n_layers)
        return dg

    # ----- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "Circuit", "graph": self.graph.to_dict(), "method": self.method, "ablation": self.ablation,
            "task": self.task, "model": self.model, "scores": encode(self.scores), "selected": encode(self.selected),
            "edges": [[s, r, v] for s, r, v in self.edges()], "info": encode(self.info),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Circuit:
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
    def plot(self, ax: Any = None) -> Any:
        """Draw the selected edges, layer by layer (bottom: embed, top: logits); width ~ |score|."""
        from mechinterp.viz.figures import _pyplot

        import networkx as nx

        plt = _pyplot()
        dg = self.to_networkx()
        if ax is None:
            fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * self.graph.n_heads + 2), 1.3 * self.graph.n_layers + 3))
        else:
            fig = ax.figure
        by_layer: dict[float, list[str]] = {}
        for n in self.graph.nodes:
            if n in dg.nodes:
                by_layer.setdefault(_layer(n, self.graph.n_layers), []).append(n)
        pos = {n: (i - (len(ns) - 1) / 2, y) for y, ns in by_layer.items() for i, n in enumerate(ns)}
        top = max((abs(d["score"]) for _, _, d in dg.edges(data=True)), default=1.0) or 1.0
        widths = [0.6 + 3.5 * abs(d["score"]) / top for _, _, d in dg.edges(data=True)]
        colors = ["#c0392b" if d["score"] < 0 else "#2c7fb8" for _, _, d in dg.edges(data=True)]
        nx.draw_networkx_nodes(dg, pos, ax=ax, node_color="#f5f5f7", edgecolors="#333", node_size=900)
        nx.draw_networkx_labels(dg, pos, ax=ax, font_size=8)
        nx.draw_networkx_edges(dg, pos, ax=ax, width=widths, edge_color=colors, arrows=True, arrowsize=12,
                               connectionstyle="arc3,rad=0.08", node_size=900)
        labels = {(u, v): d["input"] for u, v, d in dg.edges(data=True) if d["input"]}
        nx.draw_networkx_edge_labels(dg, pos, edge_labels=labels, ax=ax, font_size=7)
        ax.set_title(f"{self.method} circuit: {self.n_edges} edges ({self.task})")
        ax.axis("off")
        fig.tight_layout()
        return fig

    def save_figure(self, path: str | Path) -> Path:
        """Write the drawn graph as ``.svg`` or ``.png``."""
        from mechinterp.viz.figures import _pyplot

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig = self.plot()
        fig.savefig(path, bbox_inches="tight", dpi=120)
        _pyplot().close(fig)
        return path

    def to_html(self) -> str:
        """The drawn graph (inline PNG) and a table of the selected edges."""
        from mechinterp.viz import escape, figure_to_img_tag, table_html

        rows = [{"sender": s, "receiver": r, "score": v} for s, r, v in self.edges()[:60]]
        return (
            f"<section><h3>{escape(self.method)} circuit on {escape(self.task)} ({escape(self.model)})</h3>"
            f"<p class='muted'>{self.n_edges} of {self.graph.n_edges} edges, ablation: {escape(self.ablation)}</p>"
            f"{figure_to_img_tag(self.plot())}{table_html(rows)}</section>"
        )


def _layer(node: str, n_layers: int) -> float:
    """Drawing height of a node: embed 0, heads l + 1, MLPs l + 1.5, logits n_layers + 1."""
    if node == "embed":
        return 0.0
    if node == "logits":
        return n_layers + 1.0
    if node.startswith("MLP"):
        return int(node[3:]) + 1.5
    return int(node[1:].split("H")[0]) + 1.0
