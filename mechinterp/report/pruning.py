"""Choose a circuit's size by faithfulness: the fewest top edges that recover a target share of the behaviour.

``discover`` scores every edge; "the circuit" is the top ``k`` of them. :func:`prune`
measures the faithfulness of the top ``k`` edges at a geometric ladder of sizes up to
``max_fraction`` of the graph's edges (one batched edge-patching call), and keeps the
smallest ``k`` whose faithfulness reaches ``target``; when none does, the most faithful size
on the ladder, with ``reached=False``. Faithfulness is MIB's ``(m(C) - m(∅)) / (m(M) - m(∅))``:
1 = the circuit alone does what the whole model does, 0 = no better than the corrupted run.

Example:
    >>> import mechinterp
    >>> from mechinterp.circuits import discover, setup_for
    >>> model = mechinterp.load("zoo:toy-lm")  # doctest: +SKIP
    >>> task = mechinterp.tasks.load("ioi", model, n=16)  # doctest: +SKIP
    >>> setup = setup_for(model, task)  # doctest: +SKIP
    >>> choice = prune(model, setup, task.metric, discover(model, task, "eap", setup=setup))  # doctest: +SKIP
    >>> choice.size <= 0.25 * setup.graph.n_edges  # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["SizeChoice", "ladder", "prune"]


@dataclass(frozen=True)
class SizeChoice:
    """The chosen size and the faithfulness measured at every size tried."""

    size: int
    faithfulness: float
    target: float
    reached: bool
    sizes: list[int]
    curve: list[float]
    n_graph_edges: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def sentence(self) -> str:
        share = 100 * self.size / max(self.n_graph_edges, 1)
        verdict = (f"the fewest top edges whose faithfulness reaches {self.target:g}" if self.reached else
                   f"no size up to {max(self.sizes)} edges reached faithfulness {self.target:g}; this is the most faithful")
        return f"{self.size} of {self.n_graph_edges} edges ({share:.1f}%), faithfulness {self.faithfulness:.3f}: {verdict}"


def ladder(n_edges: int, max_fraction: float = 0.25, points: int = 12) -> list[int]:
    """About ``points`` sizes from 1 to ``max_fraction * n_edges``, geometrically spaced (distinct, ascending)."""
    top = max(1, int(max_fraction * n_edges))
    out = {1, top}
    for i in range(points):
        out.add(max(1, round(top ** (i / max(points - 1, 1)))))
    return sorted(out)


def prune(model: Any, setup: Any, metric: Callable, circuit: Any, target: float = 0.8, max_fraction: float = 0.25,
          sizes: list[int] | None = None, chunk: int = 32) -> SizeChoice:
    """The smallest top-``k`` circuit whose faithfulness reaches ``target`` (see the module docstring)."""
    import torch

    from mechinterp.circuits import faithfulness
    from mechinterp.errors import MechinterpError

    if not 0 < max_fraction <= 1:
        raise MechinterpError(f"max_fraction must be in (0, 1] (got {max_fraction}).")
    if not target == target:
        raise MechinterpError("the faithfulness target is NaN; pass a number such as 0.8.")
    total = circuit.graph.n_edges
    sizes = sorted(set(sizes or ladder(total, max_fraction)))
    keeps = torch.stack([circuit.top_n(k).selected for k in sizes])
    f = [float(x) for x in faithfulness(model, setup, metric, keeps, chunk=chunk).tolist()]
    hit = [k for k, v in zip(sizes, f) if v >= target]
    if hit:
        size = hit[0]
    else:
        size = sizes[max(range(len(f)), key=lambda i: f[i])]
    return SizeChoice(size, f[sizes.index(size)], target, bool(hit), sizes, f, total)
