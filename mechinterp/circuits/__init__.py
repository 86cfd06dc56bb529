"""Circuit search: the edge graph, batched edge patching, EAP / EAP-IG / exact / ACDC, evaluation, reports.

Example:
    >>> import mechinterp
    >>> from mechinterp.circuits import discover, compare_to_reference
    >>> model = mechinterp.load("zoo:tracr-frac-prevs")
    >>> task = mechinterp.tasks.load("tracr-frac-prevs", model, n=16)
    >>> circuit = discover(model, task, method="eap", ablation="zero")
    >>> compare_to_reference(circuit, task.ground_truth.circuit)["auc"]
    1.0
"""

from mechinterp.circuits.acdc import DISTANCES, AcdcRun, acdc, acdc_scores
from mechinterp.circuits.circuit import Circuit
from mechinterp.circuits.discover import discover, setup_for
from mechinterp.circuits.engine import ABLATIONS, PatchSetup, check_model_dtype, edge_mode, max_masks_per_pass, patch_edges, prepare, prepare_edge_patching, run_edges, sender_outputs
from mechinterp.circuits.evaluate import (
    MIB_FRACTIONS,
    FaithfulnessCurve,
    compare_to_reference,
    faithfulness,
    faithfulness_curve,
    reference_mask,
    sweep_auc,
)
from mechinterp.circuits.exact import exact_scores, metric_per_mask, metrics_of_masks
from mechinterp.circuits.gradients import (
    eap_ig_activations_scores,
    eap_ig_inputs_scores,
    eap_scores,
    mask_gradient,
    node_attribution,
)
from mechinterp.circuits.graph import Graph
from mechinterp.circuits.measures import CircuitFaithfulness, NodeEffects, ReferenceComparison
from mechinterp.circuits.report import circuit_report, node_patching_effects
from mechinterp.circuits.scorers import SCORERS, Scorer, get_scorer

__all__ = [
    "ABLATIONS",
    "AcdcRun",
    "DISTANCES",
    "MIB_FRACTIONS",
    "SCORERS",
    "Circuit",
    "CircuitFaithfulness",
    "FaithfulnessCurve",
    "Graph",
    "NodeEffects",
    "PatchSetup",
    "ReferenceComparison",
    "Scorer",
    "acdc",
    "acdc_scores",
    "check_model_dtype",
    "circuit_report",
    "compare_to_reference",
    "discover",
    "eap_ig_activations_scores",
    "eap_ig_inputs_scores",
    "eap_scores",
    "edge_mode",
    "exact_scores",
    "faithfulness",
    "faithfulness_curve",
    "get_scorer",
    "mask_gradient",
    "max_masks_per_pass",
    "metric_per_mask",
    "metrics_of_masks",
    "node_attribution",
    "node_patching_effects",
    "patch_edges",
    "prepare",  # deprecated: prepare_edge_patching
    "prepare_edge_patching",
    "reference_mask",
    "run_edges",
    "sender_outputs",
    "setup_for",
    "sweep_auc",
]
