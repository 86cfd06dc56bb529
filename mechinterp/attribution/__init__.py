"""Input attribution for language models: which prompt tokens drive a prediction.

One entry point, :func:`attribute` ``(model, prompt, target, method=..., **options)``,
returns a :class:`TokenAttribution` (scores ``[n_targets, n_tokens]``). Methods are small
classes behind one interface (:class:`AbstractAttributionMethod`), registered by name in
:data:`METHODS`: saliency, gradient × input, integrated gradients (embedding layer,
Gauss–Legendre or Riemann, chunked, with the convergence delta), sequential IG (one
token's path at a time, for language models), AttnLRP and CP-LRP (as
backward-only hooks on the TransformerLens model), occlusion / leave-one-out, exact
Shapley values, KernelSHAP and LIME. Targets: next-token logit / log-prob / prob, a
contrast, a label, a forced or generated continuation (output × input matrix in one
teacher-forced pass), or any function of the logits.

Example:
    >>> import mechinterp
    >>> from mechinterp.attribution import attribute, Contrast
    >>> model = mechinterp.load("zoo:toy-lm")  # doctest: +SKIP
    >>> res = attribute(model, "The capital of France is", Contrast(" Paris", " Rome"), method="ig")  # doctest: +SKIP
    >>> res.top_k(3)  # doctest: +SKIP
"""

from mechinterp.attribution.base import (
    METHODS,
    AbstractAttributionMethod,
    MissingBOSWarning,
    attribute,
    get_method,
    method_names,
    register_method,
)
from mechinterp.attribution.compare import comparison_html, comparison_matrix, plot_comparison
from mechinterp.attribution.faithfulness import Faithfulness, faithfulness, faithfulness_from_value_fn
from mechinterp.attribution.gradients import GradientXInput, Saliency
from mechinterp.attribution.grouping import (
    AttributionWarning,
    aggregate,
    diagnose,
    feature_groups,
    group_scores,
    merge_words,
    normalise_scores,
    rank,
    word_groups,
)
from mechinterp.attribution.ig_convergence import IGConvergence, ig_convergence
from mechinterp.attribution.integrated_gradients import CompletenessWarning, IntegratedGradients, quadrature
from mechinterp.attribution.lime import Lime
from mechinterp.attribution.many import attribute_many
from mechinterp.attribution.lrp import CPLRP, AttnLRP, lrp_hooks
from mechinterp.attribution.occlusion import Occlusion
from mechinterp.attribution.result import TokenAttribution
from mechinterp.attribution.sequential_ig import SequentialIntegratedGradients
from mechinterp.attribution.shapley import KernelShap, ShapleyValues, exact_shapley, kernel_shap
from mechinterp.attribution.targets import Contrast, Continuation, Generate, Label, MetricTarget, NextToken, as_target

__all__ = [
    "METHODS",
    "AbstractAttributionMethod",
    "AttnLRP",
    "AttributionWarning",
    "CPLRP",
    "CompletenessWarning",
    "Contrast",
    "Continuation",
    "Faithfulness",
    "Generate",
    "IGConvergence",
    "GradientXInput",
    "IntegratedGradients",
    "MissingBOSWarning",
    "KernelShap",
    "Label",
    "Lime",
    "MetricTarget",
    "NextToken",
    "Occlusion",
    "Saliency",
    "SequentialIntegratedGradients",
    "ShapleyValues",
    "TokenAttribution",
    "aggregate",
    "attribute_many",
    "as_target",
    "attribute",
    "comparison_html",
    "comparison_matrix",
    "diagnose",
    "exact_shapley",
    "faithfulness",
    "faithfulness_from_value_fn",
    "feature_groups",
    "get_method",
    "group_scores",
    "ig_convergence",
    "kernel_shap",
    "lrp_hooks",
    "merge_words",
    "method_names",
    "normalise_scores",
    "plot_comparison",
    "quadrature",
    "rank",
    "register_method",
    "word_groups",
]


def __getattr__(name: str) -> object:
    if name == "Metric":  # deprecated old name of MetricTarget
        from mechinterp.attribution import targets

        return targets.Metric
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
