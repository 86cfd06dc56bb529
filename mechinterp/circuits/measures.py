"""Results of evaluating circuits: faithfulness of given edge sets, agreement with a reference, node effects.

Each is a small frozen result (``to_dict``/``save``/``load``/``plot``/``to_html``) that also
behaves like the bare value the functions used to return: :class:`CircuitFaithfulness` like
its ``[k]`` tensor (``f[0]``, ``f.tolist()``, ``torch.allclose(f, ...)``),
:class:`ReferenceComparison` and :class:`NodeEffects` like read-only dicts
(``stats["auc"]``, ``effects.items()``, ``dict(stats)``).

Example:
    >>> import torch
    >>> f = CircuitFaithfulness(values=torch.tensor([1.0, 0.25]), full=2.0, empty=0.0, n_edges=[10, 3])
    >>> float(f[1]), f.tolist()
    (0.25, [1.0, 0.25])
    >>> stats = ReferenceComparison(auc=1.0, precision=0.5, recall=1.0, f1=2 / 3, n_selected=4, n_reference=2)
    >>> stats["auc"], sorted(stats)[:2]
    (1.0, ['auc', 'f1'])
"""

from __future__ import annotations

from abc import abstractmethod

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.results import AbstractResult, TensorView

__all__ = ["CircuitFaithfulness", "NodeEffects", "ReferenceComparison"]


def _figure(ax: Any, size: tuple[float, float]) -> tuple[Any, Any]:
    from mechinterp.viz import pyplot

    if ax is None:
        return pyplot().subplots(figsize=size)
    return ax.figure, ax


@dataclass(frozen=True, eq=False)
class CircuitFaithfulness(TensorView, AbstractResult):
    """``f(C) = (m(C) - m(empty)) / (m(full) - m(empty))`` for each of ``k`` edge sets.

    Behaves like the ``[k]`` tensor ``values`` (indexing, ``.tolist()``, torch functions).

    Attributes:
        values: ``[k]`` faithfulness of each circuit (1: as the full model, 0: as the empty circuit).
        full / empty: mean metric of the clean model and of every edge patched.
        n_edges: edges kept in each circuit.
        metric: the metric's name.
    """

    values: Float[Tensor, " k"]
    full: float
    empty: float
    n_edges: list[int] = field(default_factory=list)
    metric: str = ""

    _tensor_field = "values"

    def plot(self, ax: Any = None) -> Any:
        """One bar per circuit; the dashed line is the full model (1)."""
        fig, ax = _figure(ax, (max(3.0, 0.4 * len(self.values) + 1.5), 3.0))
        ax.bar(range(len(self.values)), self.values.float().numpy())
        ax.axhline(1.0, color="#888", lw=0.8, ls="--")
        # one tick per circuit, named by its size (a lone bar otherwise sat on ticks -0.4 ... 0.4)
        sizes = list(self.n_edges or [])
        names = [f"#{i}\n{sizes[i]} edges" if i < len(sizes) else f"#{i}" for i in range(len(self.values))]
        ax.set_xticks(range(len(self.values)), labels=names, fontsize=7)
        ax.set_xlabel("circuit")
        ax.set_ylabel("faithfulness (full model = 1)")
        ax.set_title(f"circuit faithfulness{' (' + self.metric + ')' if self.metric else ''}", fontsize=9)
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        from mechinterp.viz import escape, figure_to_img_tag, table_html

        rows = [{"circuit": i, "edges": n, "faithfulness": float(v)}
                for i, (v, n) in enumerate(zip(self.values.tolist(), self.n_edges or [None] * len(self.values)))]
        return (f"<section><h3>Circuit faithfulness{' (' + escape(self.metric) + ')' if self.metric else ''}</h3>"
                f"<p>m(full) {self.full:.4g}, m(empty) {self.empty:.4g}</p>{figure_to_img_tag(self.plot())}"
                f"{table_html(rows)}</section>")


class _ReadOnlyMapping(Mapping):
    """Dict-style reading (``r["key"]``, ``.items()``, ``dict(r)``) of a result."""

    @abstractmethod
    def _mapping(self) -> dict[str, Any]:
        """The result's fields as the plain dict it reads like (each subclass says which)."""

    def __getitem__(self, key: str) -> Any:
        return self._mapping()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    __hash__ = object.__hash__


@dataclass(frozen=True, eq=False)
class ReferenceComparison(_ReadOnlyMapping, AbstractResult):
    """Agreement of a circuit with a reference circuit; reads like a dict of its numbers.

    Attributes:
        auc: edge ROC AUC (for a threshold sweep, the trapezoid under the sweep's ROC points).
        precision / recall / f1: of the selected edges against the reference edges.
        n_selected / n_reference: edge counts.
        auc_pessimistic / auc_ranking: only for threshold sweeps (ACDC): the staircase AUC
            and the AUC of ranking edges by ``|score|`` (``None`` otherwise, and then absent
            from the dict view).
    """

    auc: float
    precision: float
    recall: float
    f1: float
    n_selected: int
    n_reference: int
    auc_pessimistic: float | None = None
    auc_ranking: float | None = None

    def _mapping(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def plot(self, ax: Any = None) -> Any:
        """Bars of the AUC(s), precision, recall and F1."""
        names = [k for k, v in self._mapping().items() if not k.startswith("n_")]
        fig, ax = _figure(ax, (max(4.0, 1.0 * len(names) + 1.2), 3.0))
        ax.bar(range(len(names)), [float(self[k]) for k in names])
        ax.set_ylim(0, 1.05)
        ax.set_xticks(range(len(names)), labels=names, fontsize=8)  # horizontal: slanted labels ran into each other
        ax.set_ylabel("score (1 = matches the reference)")
        ax.set_title("circuit vs the reference circuit", fontsize=9)
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        from mechinterp.viz import table_html

        return f"<section><h3>Against the reference circuit</h3>{table_html([self._mapping()])}</section>"


@dataclass(frozen=True, eq=False)
class NodeEffects(_ReadOnlyMapping, AbstractResult):
    """Per sender node: the normalised metric change when all its outgoing edges are patched.

    Reads like the dict ``{node: effect}`` (``effects["L1H2"]``, ``.items()``).

    Attributes:
        effects: ``{node name: effect}``; -1 means the node alone accounts for the whole
            clean-vs-ablated difference.
        n_layers / n_heads: the model's shape (for the head heatmap).
        clean / patched: mean metric of the clean model and with every edge patched.
    """

    effects: dict[str, float]
    n_layers: int
    n_heads: int
    clean: float = 0.0
    patched: float = 0.0

    def _mapping(self) -> dict[str, Any]:
        return self.effects

    def plot(self, ax: Any = None) -> Any:
        """Heatmap of every head's effect (layers × heads)."""
        from mechinterp.viz import heatmap

        grid = torch.full((self.n_layers, self.n_heads), float("nan"))
        for name, value in self.effects.items():
            if name.startswith("L"):
                layer, head = name[1:].split("H")
                grid[int(layer), int(head)] = value
        return heatmap(grid, [f"L{l}" for l in range(self.n_layers)], [f"H{h}" for h in range(self.n_heads)],
                       title="head patching effect (normalised)", xlabel="head", ylabel="layer", ax=ax,
                       cbar_label="normalised effect")

    def top(self, k: int = 20) -> list[tuple[str, float]]:
        """The ``k`` nodes of largest ``|effect|``."""
        return sorted(self.effects.items(), key=lambda kv: -abs(kv[1]))[:k]

    def to_html(self, top_k: int = 20) -> str:
        from mechinterp.viz import figure_to_img_tag, table_html

        rows = [{"node": k, "effect": v} for k, v in self.top(top_k)]
        return (f"<section><h3>Per-node patching effects</h3><p>table: top {len(rows)} of {len(self.effects)} nodes by "
                f"|effect|</p>{figure_to_img_tag(self.plot())}{table_html(rows)}</section>")
