"""ACDC (Conmy et al. 2023): greedy edge pruning from the logits backwards, with a threshold sweep.

For each receiver, from the logits back to the first layer, and for each of its incoming
edges (latest sender first), ACDC patches the edge on top of everything already removed and
keeps it removed if the distance to the full model grows by less than ``tau``::

    remove s -> r  iff  D(circuit without s -> r) - D(circuit) < tau

A node whose output no kept edge reads is skipped: its inputs are removed without testing.

Batched exactly: the candidates of a receiver are tried as *prefixes* (candidate 1 removed;
1 and 2 removed; ...) in one pass of up to ``chunk`` masks. While every candidate is accepted,
prefix ``j`` is exactly ACDC's trial ``j``; at the first rejection the rest is re-run from
there. Results are identical to the one-pass-per-edge loop, in fewer passes.

Distances (``DISTANCES``): ``"kl"`` (KL(full || circuit) of next-token distributions, mean
over prompts and positions), ``"l2"`` (squared logit difference, summed over the vocabulary,
mean over prompts and positions; ACDC's tracr metric), ``"metric"`` (``|mean metric(circuit) -
mean metric(full)|``).

The threshold sweep runs ACDC at each ``tau`` (default: ``D(empty circuit)`` times
``logspace(-4, 0, 9)``); an edge's score is the largest ``tau`` at which it survives (0 if
never). ACDC's circuits need not be nested across thresholds (with redundant heads, a larger
``tau`` can keep an edge that a smaller one dropped because its backup was tested first), so
the sweep also records each run's kept edges (``info["sweep"][i]["kept"]``) and
:func:`mechinterp.circuits.compare_to_reference` computes the ROC the way the ACDC paper does:
one (false-positive rate, true-positive rate) point per threshold.

Precision: the patched runs are in the model's dtype; distances are computed from their logits
cast to float32. On a bf16 model, thresholds below the distance that bf16 rounding alone
produces (measure it: ``D`` between two clean runs with a tiny patch) decide on noise.

Order, as in the ACDC paper and code: receivers from the logits back to layer 0 (reverse
topological order); for each receiver its senders from the latest to the embedding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from mechinterp.core.validation import check_count
from mechinterp.core.precision import runs_synced
from mechinterp.circuits.engine import PatchSetup, check_metric_output, patch_edges
from mechinterp.core.metrics import Metric
from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError, NonFiniteError

__all__ = ["DISTANCES", "AcdcRun", "acdc", "acdc_scores"]


@dataclass(frozen=True, eq=False)
class AcdcRun(AbstractResult):
    """One ACDC run: the edges kept at ``threshold``.

    Unpacks like the ``(kept, info)`` pair :func:`acdc` used to return
    (``kept, info = acdc(...)``, ``acdc(...)[0]``), with ``info = {"passes", "distance"}``.

    Attributes:
        kept: ``[n_senders, n_receivers]`` bool, the edges that survived.
        edges: the kept edges as ``[sender, receiver]`` names.
        threshold: ``tau``. distance: ``D`` of the final circuit. distance_name: ``"kl"``,
            ``"l2"`` or ``"metric"``. passes: batched forward passes run.
    """

    kept: Bool[Tensor, "n_senders n_receivers"]
    edges: list[list[str]]
    threshold: float
    distance: float
    distance_name: str = "kl"
    passes: int = 0

    @property
    def info(self) -> dict[str, Any]:
        return {"passes": self.passes, "distance": self.distance}

    def __iter__(self) -> Iterator[Any]:
        return iter((self.kept, self.info))

    def __getitem__(self, index: int) -> Any:
        return (self.kept, self.info)[index]

    def __len__(self) -> int:
        return 2

    def plot(self, ax: Any = None) -> Any:
        """The kept-edge matrix, named, on the senders and receivers that keep an edge."""
        from mechinterp.viz import heatmap

        rows, cols = torch.nonzero(self.kept, as_tuple=True)
        title = f"ACDC kept edges (tau={self.threshold:.3g})"
        if len(rows) == 0 or len(self.edges) != len(rows):  # nothing kept, or edges not in kept's order: indices
            return heatmap(self.kept.float(), list(map(str, range(self.kept.shape[0]))),
                           list(map(str, range(self.kept.shape[1]))), title=title, xlabel="receiver index",
                           ylabel="sender index", center=False, ax=ax, cbar_label="kept (1) / removed (0)")
        names_r = dict(zip(rows.tolist(), (e[0] for e in self.edges)))
        names_c = dict(zip(cols.tolist(), (e[1] for e in self.edges)))
        r_idx, c_idx = sorted(names_r), sorted(names_c)
        sub = self.kept[r_idx][:, c_idx].float()
        return heatmap(sub, [names_r[i] for i in r_idx], [names_c[j] for j in c_idx],
                       title=f"{title}: {len(self.edges)} edges", xlabel="receiver", ylabel="sender", center=False,
                       ax=ax, cmap="Greys", cbar_label="kept (1) / removed (0)")

    def to_html(self, max_rows: int = 60) -> str:
        from mechinterp.viz import escape, table_html

        rows = [{"sender": s, "receiver": r} for s, r in self.edges[:max_rows]]
        return (f"<section><h3>ACDC at tau = {self.threshold:.4g} ({escape(self.distance_name)})</h3>"
                f"<p>{len(self.edges)} edges kept, distance {self.distance:.4g}, {self.passes} passes</p>"
                f"{table_html(rows) if rows else ''}</section>")


def _kl(logits: Tensor, ref: Tensor, metric: Callable) -> Tensor:  # [k, batch, pos, vocab], [batch, pos, vocab]
    logp, logq = ref.log_softmax(-1)[None], logits.log_softmax(-1)
    return (logp.exp() * (logp - logq)).sum(-1).mean((1, 2))


def _l2(logits: Tensor, ref: Tensor, metric: Callable) -> Tensor:
    return ((logits - ref[None]) ** 2).sum(-1).mean((1, 2))


def _metric_gap(logits: Tensor, ref: Tensor, metric: Callable) -> Tensor:
    full = check_metric_output(metric, metric(ref), ref.shape[0]).mean()
    return torch.stack([(check_metric_output(metric, metric(row), row.shape[0]).mean() - full).abs() for row in logits])


DISTANCES: dict[str, Callable[[Tensor, Tensor, Callable], Tensor]] = {"kl": _kl, "l2": _l2, "metric": _metric_gap}


def _distance(name: str) -> Callable:
    if name not in DISTANCES:
        raise MechinterpError(f"Unknown ACDC distance {name!r}; use one of {sorted(DISTANCES)}.")
    fn = DISTANCES[name]

    def checked(logits: Tensor, ref: Tensor, metric: Callable) -> Tensor:
        out = fn(logits.float(), ref.float(), metric)  # float32 whatever the model's dtype
        if not torch.isfinite(out).all():
            raise NonFiniteError(f"The ACDC distance {name!r} is NaN or infinite; check the metric and the logits.")
        return out

    return checked


def _check_threshold(value: Any, name: str = "threshold") -> float:
    """A threshold as a float: finite and non-negative (NaN compares false with everything and keeps every edge)."""
    try:
        tau = float(value)
    except (TypeError, ValueError):
        raise MechinterpError(f"ACDC {name} must be a number; got {value!r}.") from None
    if not math.isfinite(tau) or tau < 0:
        raise MechinterpError(
            f"ACDC {name} must be a finite, non-negative number; got {value!r} (NaN keeps every edge, inf none). "
            "Pass values such as [1e-3, 1e-2, 1e-1], or leave thresholds=None for the default sweep."
        )
    return tau


def _check_thresholds(thresholds: Any) -> list[float]:
    try:
        if isinstance(thresholds, (str, bytes)):
            raise TypeError
        items = list(thresholds)
    except TypeError:
        raise MechinterpError(f"ACDC thresholds must be a list of numbers, e.g. [1e-3, 1e-2]; got {thresholds!r}.") from None
    values = sorted(_check_threshold(t, "thresholds") for t in items)
    if not values:
        raise MechinterpError("ACDC thresholds must be a non-empty list of non-negative numbers.")
    return values


@runs_synced
def acdc(
    model: Any,
    setup: PatchSetup,
    metric: Metric,
    threshold: float,
    distance: str = "kl",
    chunk: int = 16,
    candidates: Tensor | None = None,
) -> AcdcRun:
    """One ACDC run at ``threshold``.

    Returns:
        An :class:`AcdcRun`; it unpacks as ``(kept [n_senders, n_receivers] bool, info)`` with
        ``info["passes"]`` forward passes and ``info["distance"]`` of the final circuit.
    """
    check_count(chunk, "chunk", none_ok=True)
    threshold = _check_threshold(threshold)
    dist_fn = _distance(distance)
    g = setup.graph
    real = g.real.clone() if candidates is None else g.real & candidates.to(torch.bool)
    removed = (g.real & ~real).float()  # edges outside the candidates start removed
    ref = patch_edges(model, setup, torch.zeros(g.real.shape))[0]
    check_metric_output(metric, metric(ref.float()), ref.shape[0])  # every scorer checks the metric, whatever the distance
    current = float(dist_fn(patch_edges(model, setup, removed), ref, metric)[0])
    passes = 2
    for col in reversed(range(g.n_receivers)):
        node = g.receiver_node(g.receivers[col])
        senders = [int(s) for s in torch.nonzero(real[:, col]).flatten().tolist()][::-1]
        if node != "logits":
            out_row = g.sender_index(node)
            if bool(((removed[out_row] == 0) & g.real[out_row]).sum() == 0):
                removed[senders, col] = 1.0  # nothing reads this node: its inputs do not matter
                continue
        todo = senders
        while todo:
            batch = todo[:chunk]
            masks = removed[None].repeat(len(batch), 1, 1)
            for j in range(len(batch)):
                masks[j:, batch[j], col] = 1.0
            dists = dist_fn(patch_edges(model, setup, masks), ref, metric).tolist()
            passes += 1
            prev, stop = current, len(batch)
            for j, d in enumerate(dists):
                if d - prev < threshold:
                    prev = d
                else:
                    stop = j
                    break
            for s in batch[:stop]:
                removed[s, col] = 1.0
            current = prev
            todo = todo[stop + 1 :] if stop < len(batch) else todo[len(batch) :]
    kept = g.real & (removed == 0)
    rows, cols = torch.nonzero(kept, as_tuple=True)
    edges = [[g.senders[r], g.receivers[c]] for r, c in zip(rows.tolist(), cols.tolist())]
    return AcdcRun(kept=kept, edges=edges, threshold=threshold, distance=current, distance_name=distance, passes=passes)


@runs_synced
def acdc_scores(
    model: Any,
    setup: PatchSetup,
    metric: Metric,
    thresholds: Sequence[float] | None = None,
    distance: str = "kl",
    chunk: int = 16,
    candidates: Tensor | None = None,
) -> tuple[Float[Tensor, "n_senders n_receivers"], dict[str, Any]]:
    """ACDC's threshold sweep as edge scores: the largest threshold at which each edge survives.

    Args:
        thresholds: values of ``tau``; default ``D(empty) * logspace(-4, 0, 9)``.
        distance: ``"kl"``, ``"l2"`` or ``"metric"`` (see the module docstring).

    Returns:
        ``(scores, info)``; ``info["sweep"]`` lists ``{"threshold", "n_edges", "passes", "kept"}`` per run
        (``kept``: the run's edges as ``[sender, receiver]`` names) and
        ``info["selected"]`` is the circuit kept at the median threshold.
    """
    check_count(chunk, "chunk", none_ok=True)
    g = setup.graph
    if thresholds is not None:
        thresholds = _check_thresholds(thresholds)
    else:
        ref = patch_edges(model, setup, torch.zeros(g.real.shape))[0]
        empty = float(_distance(distance)(patch_edges(model, setup, g.real.float()), ref, metric)[0])
        thresholds = _check_thresholds((max(empty, 1e-12) * torch.logspace(-4, 0, 9)).tolist())
    scores = torch.zeros(g.n_senders, g.n_receivers)
    sweep, middle = [], None
    for i, tau in enumerate(thresholds):
        run = acdc(model, setup, metric, tau, distance, chunk, candidates)
        kept = run.kept
        scores[kept] = tau if tau > 0 else 1e-12
        sweep.append({"threshold": tau, "n_edges": int(kept.sum()), "passes": run.passes, "kept": run.edges})
        middle = kept if i == len(thresholds) // 2 else middle
    return scores, {"sweep": sweep, "distance": distance, "selected": middle}
