"""Evaluating circuits: faithfulness, faithfulness curves (CPR, CMD) and agreement with a reference.

* **Faithfulness** of a circuit ``C``: ``f(C) = (m(C) - m(empty)) / (m(full) - m(empty))`` where
  ``m`` is the mean task metric, ``m(C)`` runs the model with every edge outside ``C`` patched,
  ``m(full)`` is the clean model and ``m(empty)`` has every edge patched. ``f(full) = 1`` and
  ``f(empty) = 0`` by construction.
* **Faithfulness curve** (MIB, Mueller et al. 2025): ``f`` of the top-scoring edges at edge
  fractions ``x`` (default MIB's 0.1%, 0.2%, 0.5%, 1%, 2%, 5%, 10%, 20%, 50%, 100%), all circuits
  in one batched pass per chunk. **CPR** is the area under ``f(x)`` and **CMD** the area under
  ``|1 - f(x)|``, by the trapezoidal rule over ``x`` (higher CPR, lower CMD are better).
  Edges are ranked by ``|score|``.
* **Reference agreement**: edge ROC AUC (``sklearn.metrics.roc_auc_score`` of ``|score|`` over
  the real edges, labels = reference edges), and precision / recall of the selected edges.
  For a circuit from a threshold sweep (ACDC: ``info["sweep"]`` with each run's ``kept``
  edges) the ROC is built as in the ACDC paper: one point per threshold, plus (0, 0) and
  (1, 1); points dominated by one with a lower false-positive rate are dropped (ACDC's code
  does the same); ``auc`` is the trapezoid under that curve, ``auc_pessimistic`` ACDC's
  staircase (each point's rate held until the next).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool
from torch import Tensor

from mechinterp.core.validation import check_count
from mechinterp.core.precision import runs_synced
from mechinterp.circuits.circuit import Circuit
from mechinterp.circuits.engine import PatchSetup, metric_name
from mechinterp.circuits.exact import metrics_of_masks
from mechinterp.circuits.graph import Graph
from mechinterp.core import metrics
from mechinterp.core.metrics import Metric
from mechinterp.circuits.measures import CircuitFaithfulness, ReferenceComparison
from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError

__all__ = ["MIB_FRACTIONS", "CircuitFaithfulness", "FaithfulnessCurve", "ReferenceComparison", "compare_to_reference", "faithfulness", "faithfulness_curve", "reference_mask", "sweep_auc"]

MIB_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@runs_synced
def faithfulness(
    model: Any, setup: PatchSetup, metric: Metric, keep: Bool[Tensor, "k n_senders n_receivers"] | Circuit,
    chunk: int = 32,
) -> CircuitFaithfulness:
    """Normalised metric of each circuit run alone (edges outside it patched).

    Args:
        keep: a :class:`Circuit`, or ``[n_senders, n_receivers]`` / ``[k, ...]`` bool masks of kept edges.

    Returns:
        A :class:`~mechinterp.circuits.measures.CircuitFaithfulness` that behaves like the ``[k]``
        tensor of faithfulness values (``f[0]``, ``f.tolist()``), with ``m(full)``, ``m(empty)``
        and each circuit's edge count.

    Raises:
        MechinterpError: when the full and empty circuits give the same metric (nothing to normalise).
        ShapeMismatchError / NonFiniteError: the metric does not return one finite number per prompt
            (:func:`~mechinterp.circuits.engine.check_metric_output`).
    """
    check_count(chunk, "chunk", none_ok=True)
    g = setup.graph
    keep = keep.selected if isinstance(keep, Circuit) else torch.as_tensor(keep).bool()
    keep = keep[None] if keep.ndim == 2 else keep
    masks = torch.cat([torch.zeros(1, *g.real.shape), g.real.float()[None], (g.real & ~keep).float()])
    values = metrics_of_masks(model, setup, metric, masks, chunk=chunk)
    full, empty = values[0], values[1]
    if abs(float(full - empty)) < 1e-8:
        raise MechinterpError(
            "The full model and the empty circuit give the same metric, so faithfulness is undefined; "
            "use a task/ablation where patching every edge changes the metric."
        )
    kept = keep & g.real
    return CircuitFaithfulness(values=metrics.normalise(values[2:], clean=full, corrupted=empty), full=float(full), empty=float(empty),
                               n_edges=[int(k.sum()) for k in kept], metric=metric_name(metric))


@dataclass(frozen=True, eq=False)
class FaithfulnessCurve(AbstractResult):
    """Faithfulness of top-``x`` circuits, with MIB's CPR and CMD areas.

    Attributes:
        fractions: edge fractions ``x``; ``n_edges`` the edges kept at each.
        faithfulness: ``f`` at each fraction.
        cpr / cmd: areas under ``f`` and ``|1 - f|`` (trapezoid over ``x``).
        method: the scorer's name.
    """

    fractions: list[float]
    n_edges: list[int]
    faithfulness: list[float]
    cpr: float
    cmd: float
    method: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def plot(self, ax: Any = None) -> Any:
        from mechinterp.viz import pyplot

        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(5, 3.2))
        else:
            fig = ax.figure
        ax.plot(self.fractions, self.faithfulness, marker="o", label=f"{self.method} (CPR {self.cpr:.3f}, CMD {self.cmd:.3f})")
        ax.axhline(1.0, color="#888", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("fraction of edges kept")
        ax.set_ylabel("faithfulness")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        from mechinterp.viz import figure_to_img_tag, table_html

        rows = [{"fraction": x, "edges": n, "faithfulness": f} for x, n, f in zip(self.fractions, self.n_edges, self.faithfulness)]
        return (f"<section><h3>Faithfulness curve ({self.method})</h3><p>CPR {self.cpr:.4f}, CMD {self.cmd:.4f}</p>"
                f"{figure_to_img_tag(self.plot())}{table_html(rows)}</section>")

    def to_dataframe(self) -> Any:
        import pandas as pd

        return pd.DataFrame({"fraction": self.fractions, "n_edges": self.n_edges, "faithfulness": self.faithfulness})


@runs_synced
def faithfulness_curve(
    model: Any, setup: PatchSetup, metric: Metric, circuit: Circuit,
    fractions: Sequence[float] = MIB_FRACTIONS, chunk: int = 32,
) -> FaithfulnessCurve:
    """Faithfulness of the top ``ceil(x * n_edges)`` edges of ``circuit`` for each ``x`` (one batched run)."""
    check_count(chunk, "chunk", none_ok=True)
    fractions = [float(x) for x in fractions]
    if not fractions or any(not 0 <= x <= 1 for x in fractions):
        raise MechinterpError("fractions must be a non-empty list of numbers in [0, 1].")
    total = setup.graph.n_edges
    sizes = [int(np.ceil(x * total)) for x in fractions]
    keeps = torch.stack([circuit.top_n(n).selected for n in sizes])
    f = faithfulness(model, setup, metric, keeps, chunk=chunk).values.tolist()
    x = np.asarray(fractions)
    cpr = _trapezoid(f, x) if len(x) > 1 else float(f[0])
    cmd = _trapezoid(np.abs(1 - np.asarray(f)), x) if len(x) > 1 else abs(1 - f[0])
    return FaithfulnessCurve(fractions, sizes, f, cpr, cmd, circuit.method)


def reference_mask(graph: Graph, reference: dict[str, Any] | Sequence[Any]) -> Bool[Tensor, "n_senders n_receivers"]:
    """The reference circuit's edges as a bool matrix (``reference``: a ``circuit.json`` dict or a list of pairs)."""
    edges = reference["edges"] if isinstance(reference, dict) else reference
    return graph.edge_mask(edges)


def compare_to_reference(circuit: Circuit, reference: dict[str, Any] | Sequence[Any]) -> ReferenceComparison:
    """Edge ROC AUC of ``|scores|``, and precision / recall / F1 of the selected edges, against ``reference``.

    Returns a :class:`~mechinterp.circuits.measures.ReferenceComparison`, which reads like a dict
    (``["auc"]``, ``.items()``).

    Example:
        >>> compare_to_reference(circuit, task.ground_truth.circuit)["auc"]  # doctest: +SKIP
        1.0
    """
    from sklearn.metrics import roc_auc_score

    g = circuit.graph
    ref = reference_mask(g, reference)
    labels = ref[g.real].numpy()
    if labels.all() or not labels.any():
        raise MechinterpError("The reference must contain some but not all edges of the graph for an ROC AUC.")
    sweep = circuit.info.get("sweep")
    extra: dict[str, float] = {}
    if sweep and all("kept" in row for row in sweep):
        points = [_roc_point(g, ref, g.edge_mask(row["kept"])) for row in sweep]
        auc, extra["auc_pessimistic"] = sweep_auc(points)
        extra["auc_ranking"] = float(roc_auc_score(labels, circuit.scores.abs()[g.real].numpy()))
    else:
        auc = float(roc_auc_score(labels, circuit.scores.abs()[g.real].numpy()))
    tp = int((circuit.selected & ref).sum())
    n_sel, n_ref = int(circuit.selected.sum()), int(ref.sum())
    precision = tp / n_sel if n_sel else 0.0
    recall = tp / n_ref
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ReferenceComparison(auc=auc, precision=precision, recall=recall, f1=f1, n_selected=n_sel, n_reference=n_ref, **extra)


def _trapezoid(y: Any, x: Any) -> float:
    """Area under ``y(x)`` by the trapezoid rule (``np.trapezoid`` exists only from numpy 2.0)."""
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def _roc_point(graph: Graph, ref: Tensor, kept: Tensor) -> tuple[float, float]:
    """(false-positive rate, true-positive rate) of one circuit over the real edges."""
    neg = graph.real & ~ref
    return float((kept & neg).sum()) / max(int(neg.sum()), 1), float((kept & ref).sum()) / max(int(ref.sum()), 1)


def sweep_auc(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """ROC AUC from one (FPR, TPR) point per threshold: (trapezoid, ACDC's pessimistic staircase).

    (0, 0) and (1, 1) are added; points whose TPR is below that of a point with lower or equal
    FPR are dropped, so the curve is monotone.

    Example:
        >>> sweep_auc([(0.0, 0.5), (0.5, 1.0)])
        (0.875, 0.75)
    """
    pts = sorted({(0.0, 0.0), (1.0, 1.0), *((float(x), float(y)) for x, y in points)})
    curve: list[tuple[float, float]] = []
    for x, y in pts:
        if curve and y < curve[-1][1]:
            continue  # dominated: an earlier point has at most this FPR and a higher TPR
        curve.append((x, y))
    xs, ys = np.array([p[0] for p in curve]), np.array([p[1] for p in curve])
    trapezoid = _trapezoid(ys, xs)
    pessimistic = float(np.sum((1 - xs)[1:] * np.diff(ys)))
    return trapezoid, pessimistic
