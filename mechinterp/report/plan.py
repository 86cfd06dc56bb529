"""How much work each report section does, scaled to the model and the device.

A full report on a 2-layer zoo model takes seconds; the same sweeps on a 30-layer model on
two CPU cores take over an hour (activation patching by layer × position alone is
``n_layers × n_pos`` patched runs of every prompt). :func:`plan_report` measures one
forward pass of the task's prompts on the model's own device (``unit_s``: seconds per
prompt), estimates every section's cost in those units, and shrinks the sections — fewer
prompts, every k-th layer in the position sweep, fewer integration steps, fewer head-probe
sequences — until the estimate fits ``budget_s``. Every reduction is recorded with its
reason (``plan.reasons``) and shown at the top of the page.

The cost of each section in prompt-forwards (``U``, measured):

=================  ==============================================================
patching           ``n × (n_pos × |layers| + n_layers × n_heads) × 0.25 + 2n`` (a patched
                   run starts at the patched layer and reads out only the last position;
                   stacked variants batch well: 0.21–0.22 U measured on SmolLM2)
circuit            ``n × (1.5 × (6 × steps + 4) + 10 × (n_fractions + 2 + graph_points))``
                   (EAP-IG: forward and backward per step over edge-mixed inputs; each
                   faithfulness point, plus the full and empty circuits and the sizes the
                   graph's slider shows, is an edge-patched run: 5–13 U
                   each measured on SmolLM2, whose 810 receivers each read their own mix
                   of 301 senders — memory-bound, so the upper end is used)
attention          ``n_probes × 2`` (probe sequences twice the prompt length)
attribution        ``prompts × (1.2 × ig_steps + 9 + n_pos / 2)`` (IG, ∇×input, CP-LRP,
                   occlusion, batched)
explain            ``1.2 × ig_steps + 3 + explain_prompts × (10 × n_pos + 20) + n`` (words: IG on
                   one prompt; a counterfactual verifies 21–76 edited prompts with their
                   fluency (log-softmax at every position) and takes backward passes: 119 and
                   225 U per prompt measured on SmolLM2 ioi and sentiment, 32 prompts, CPU;
                   the surrogate: one forward of the task's prompts)
dictionary         ``sae_prompts × (1 + 0.2 × sae_epochs) + 8n`` (one cached pass of the SAE's
                   train prompts; training: 0.2 U per prompt and epoch on toy-lm, where a
                   4 × d_model SAE is large against the model, less on real models; then the
                   evaluation's three passes, feature attribution, patching the top latents
                   and their examples over the report's prompts)
probes             ``n + 1.5 × n_layers`` (one cached forward, then a probe and 5 random
                   controls per layer: 1–3 U per layer on SmolLM2 on the CPU)
=================  ==============================================================

Example:
    >>> plan = ReportPlan.full(n_layers=2, n_heads=4, n_pos=8, n=16)
    >>> plan.patch_layers, plan.reasons
    ([0, 1], [])
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["ReportPlan", "plan_report", "DEFAULT_BUDGET_S"]

#: seconds the sections may take together (model loading excluded)
DEFAULT_BUDGET_S = 420.0

#: SAE training cost per train prompt and epoch, in prompt-forwards (measured; see the module docstring)
SAE_EPOCH_U = 0.2

#: the faithfulness-curve points: MIB's ten, and five when the budget is tight
FULL_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
FEW_FRACTIONS = (0.001, 0.01, 0.1, 0.5, 1.0)


@dataclass(frozen=True)
class ReportPlan:
    """The sizes of every section (see the module docstring) and why any was reduced."""

    n_layers: int
    n_heads: int
    n_pos: int
    n: int
    patch_n: int
    patch_layers: list[int]
    circuit_n: int
    circuit_steps: int
    circuit_top_k: int
    circuit_fractions: tuple[float, ...]
    head_probes: int
    attribution_prompts: int
    ig_steps: int
    circuit_graph_points: int = 6
    explain_prompts: int = 3
    sae_prompts: int = 256
    sae_epochs: int = 10
    unit_s: float = 0.0
    budget_s: float = DEFAULT_BUDGET_S
    reasons: list[str] = field(default_factory=list)

    @classmethod
    def full(cls, n_layers: int, n_heads: int, n_pos: int, n: int) -> ReportPlan:
        """The unreduced plan: every layer, 16 patching prompts, 24 circuit prompts, 5 EAP-IG steps."""
        return cls(
            n_layers=n_layers, n_heads=n_heads, n_pos=n_pos, n=n, patch_n=min(n, 16), patch_layers=list(range(n_layers)),
            circuit_n=min(n, 24), circuit_steps=5, circuit_top_k=min(20, 4 * n_layers + 8),
            circuit_fractions=FULL_FRACTIONS, head_probes=32,
            attribution_prompts=min(n, 2), ig_steps=64, explain_prompts=min(n, 3),
        )

    # ----- cost model, in prompt-forwards ---------------------------------------------------
    def costs(self) -> dict[str, float]:
        """Estimated cost of each section in prompt-forwards (multiply by ``unit_s`` for seconds)."""
        return {
            "task": 2.0 * self.n,
            "patching": self.patch_n * (self.n_pos * len(self.patch_layers) + self.n_layers * self.n_heads) * 0.25 + 2 * self.patch_n,
            "circuit": self.circuit_n * (1.5 * (6.0 * self.circuit_steps + 4)
                                         + 10.0 * (len(self.circuit_fractions) + 2 + self.circuit_graph_points)),
            "attention": 2.0 * self.head_probes + 1,
            "attribution": self.attribution_prompts * (1.2 * self.ig_steps + 9 + self.n_pos / 2),
            "probes": self.n + 1.5 * self.n_layers,
            "lens": 1.2 * self.n,  # one cached pass, then the lens and DLA read it (benchmarks/results/lens.md)
            "explain": 1.2 * self.ig_steps + 3 + self.explain_prompts * (10.0 * self.n_pos + 20) + self.n,
            "dictionary": self.sae_prompts * (1.0 + SAE_EPOCH_U * self.sae_epochs) + 8.0 * self.n,
        }

    def estimate_s(self) -> dict[str, float]:
        """Estimated seconds per section (needs ``unit_s``)."""
        return {k: v * self.unit_s for k, v in self.costs().items()}

    def total_s(self) -> float:
        return sum(self.estimate_s().values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "estimate_s": {k: round(v, 1) for k, v in self.estimate_s().items()}}


#: how each reducible setting is named in the page
NAMES = {
    "patch_n": "activation patching prompts", "circuit_n": "circuit (EAP-IG) prompts", "ig_steps": "IG steps",
    "circuit_steps": "EAP-IG steps", "head_probes": "head-detection probe sequences",
    "circuit_fractions": "faithfulness-curve points", "attribution_prompts": "attribution prompts",
    "circuit_graph_points": "circuit sizes on the graph's slider",
    "explain_prompts": "counterfactual prompts",
    "sae_prompts": "SAE training prompts", "sae_epochs": "SAE training epochs",
}


def _shrink(plan: ReportPlan, budget_s: float) -> ReportPlan:
    """Apply reductions in order of least harm until the estimate fits ``budget_s``."""
    reasons: list[str] = []

    def over(p: ReportPlan) -> bool:
        return p.total_s() > budget_s

    def note(p: ReportPlan, what: str) -> None:
        reasons.append(f"{what} (estimated {p.total_s():.0f} s for all sections before, budget {budget_s:.0f} s)")

    # 1. fewer patching / circuit prompts (the estimates are means: 8 prompts keep them stable)
    for attr, floor in (("patch_n", 8), ("circuit_n", 8)):
        if over(plan) and getattr(plan, attr) > floor:
            note(plan, f"{NAMES[attr]}: {getattr(plan, attr)} → {floor}")
            plan = replace(plan, **{attr: floor})
    # 2. the position sweep on every k-th layer (the head sweep keeps every layer)
    widest = max(1, plan.n_layers // 4)
    for stride in range(2, widest + 1):
        if not over(plan):
            break
        k = -(-plan.n_layers // stride)  # evenly spaced, first and last layer included
        layers = sorted({round(i * (plan.n_layers - 1) / max(1, k - 1)) for i in range(k)})
        candidate = replace(plan, patch_layers=layers)
        if not over(candidate) or stride == widest:
            note(plan, f"patching by layer × position: {len(layers)} of {plan.n_layers} layers, evenly spaced ({layers})")
            plan = candidate
    # 3. fewer faithfulness points, integration steps, head probes, then prompts again
    for attr, value in (("circuit_fractions", FEW_FRACTIONS), ("circuit_graph_points", 4), ("ig_steps", 32), ("circuit_steps", 3), ("head_probes", 16), ("patch_n", 4), ("circuit_n", 4),
                        ("attribution_prompts", 1), ("explain_prompts", 1), ("sae_prompts", 128), ("sae_epochs", 5),
                        ("ig_steps", 16), ("sae_prompts", 64),
                        ("patch_n", 2), ("circuit_n", 2)):
        if over(plan) and _size(getattr(plan, attr)) > _size(value):
            note(plan, f"{NAMES[attr]}: {getattr(plan, attr)} → {value}")
            plan = replace(plan, **{attr: value})
    if over(plan):
        reasons.append(
            f"even the smallest plan is estimated at {plan.total_s():.0f} s (budget {budget_s:.0f} s): "
            "pass a larger budget or run on a GPU (--device cuda)"
        )
    return replace(plan, reasons=reasons)


def _size(value: Any) -> float:
    return len(value) if isinstance(value, tuple) else value


def plan_report(
    n_layers: int, n_heads: int, n_pos: int, n: int, unit_s: float, budget_s: float | None = DEFAULT_BUDGET_S,
) -> ReportPlan:
    """The largest plan (up to :meth:`ReportPlan.full`) whose estimate fits ``budget_s``.

    Args:
        n_layers, n_heads: the model's shape.
        n_pos: tokens per prompt (the common length).
        n: prompts loaded for the task.
        unit_s: measured seconds of one forward pass of one prompt on the model's device.
        budget_s: seconds for all sections together; ``None``: no reduction.

    Example:
        >>> plan = plan_report(30, 9, 15, n=32, unit_s=0.3, budget_s=420)
        >>> plan.total_s() <= 420, len(plan.patch_layers) < 30, bool(plan.reasons)
        (True, True, True)
    """
    plan = replace(ReportPlan.full(n_layers, n_heads, n_pos, n), unit_s=float(unit_s), budget_s=float(budget_s or math.inf))
    if budget_s is None or not over_budget(plan):
        return plan
    return _shrink(plan, float(budget_s))


def over_budget(plan: ReportPlan) -> bool:
    return plan.total_s() > plan.budget_s
