"""The table of edge scorers: one entry per method, no if/elif chains.

Each scorer maps ``(model, setup, metric, **options)`` to ``(scores [n_senders, n_receivers], info)``.
Add a method by adding a row to :data:`SCORERS`.

| name | what | cost (forward + backward passes, after the clean and corrupted caches) |
|---|---|---|
| ``eap`` | EAP (Syed et al. 2023) | 1 + 1 |
| ``eap-ig-inputs`` | EAP-IG over input embeddings (Hanna et al. 2024) | steps + steps |
| ``eap-ig-activations`` | EAP-IG over activations, one sender layer at a time | layers x steps (fwd + bwd) |
| ``exact`` | each edge patched alone | edges / chunk batched passes |
| ``acdc`` | ACDC with a threshold sweep (Conmy et al. 2023) | sweep x (~edges / accepted run) |
| ``node`` | node attribution, broadcast to every edge leaving the node | 1 + 1, no split inputs |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from mechinterp.circuits.acdc import acdc_scores
from mechinterp.circuits.engine import PatchSetup
from mechinterp.circuits.exact import exact_scores
from mechinterp.circuits.gradients import eap_ig_activations_scores, eap_ig_inputs_scores, eap_scores, node_attribution
from mechinterp.core.metrics import Metric
from mechinterp.errors import MechinterpError

__all__ = ["SCORERS", "Scorer", "get_scorer"]


@dataclass(frozen=True)
class Scorer:
    """A registered edge-scoring method.

    Attributes:
        name: registry key (``discover(method=name)``).
        fn: ``(model, setup, metric, **options) -> (scores, info)``.
        description: one line for tables and reports.
        options: the keyword options ``fn`` accepts, with defaults.
    """

    name: str
    fn: Callable[..., tuple[Tensor, dict[str, Any]]]
    description: str
    options: dict[str, Any]

    def __call__(self, model: Any, setup: PatchSetup, metric: Metric, **options: Any) -> tuple[Tensor, dict[str, Any]]:
        unknown = set(options) - set(self.options)
        if unknown:
            raise MechinterpError(f"{self.name} does not take {sorted(unknown)}; its options are {self.options}.")
        return self.fn(model, setup, metric, **{**self.options, **options})


def _no_info(fn: Callable[..., Tensor]) -> Callable[..., tuple[Tensor, dict[str, Any]]]:
    return lambda model, setup, metric, **kw: (fn(model, setup, metric, **kw).cpu(), {})


def _node_broadcast(model: Any, setup: PatchSetup, metric: Metric) -> tuple[Tensor, dict[str, Any]]:
    nodes = node_attribution(model, setup, metric).cpu()
    return nodes[:, None] * setup.graph.real.float(), {"node_scores": nodes}


SCORERS: dict[str, Scorer] = {
    s.name: s
    for s in [
        Scorer("eap", _no_info(eap_scores), "edge attribution patching: (patched - clean) . grad at the clean run", {}),
        Scorer("eap-ig-inputs", _no_info(eap_ig_inputs_scores), "EAP with integrated gradients over input embeddings",
               {"steps": 5}),
        Scorer("eap-ig-activations", _no_info(eap_ig_activations_scores),
               "EAP with integrated gradients over each sender layer's outputs, one layer at a time", {"steps": 5}),
        Scorer("exact", _no_info(exact_scores), "metric change when one edge alone is patched",
               {"chunk": 32, "candidates": None}),
        Scorer("acdc", acdc_scores, "ACDC greedy pruning; score = largest threshold at which the edge survives",
               {"thresholds": None, "distance": "kl", "chunk": 16, "candidates": None}),
        Scorer("node", _node_broadcast, "node attribution patching (per sender), broadcast to its edges", {}),
    ]
}


def get_scorer(name: str) -> Scorer:
    """The scorer registered as ``name``; raises a MechinterpError listing them otherwise."""
    if name not in SCORERS:
        raise MechinterpError(f"Unknown circuit method {name!r}; choose one of {sorted(SCORERS)}.")
    return SCORERS[name]
