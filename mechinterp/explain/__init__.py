"""Explanations beyond attribution: counterfactuals, surrogate models, Grad-CAM.

Example:
    >>> import mechinterp
    >>> from mechinterp.explain import counterfactual
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> cf = counterfactual(model, "The capital of France is", target="Rome")  # doctest: +SKIP
"""

from mechinterp.explain.counterfactual import Counterfactual, counterfactual
from mechinterp.explain.global_view import GlobalView, aggregate, global_attribution
from mechinterp.explain.gradcam import GradCam, grad_cam, grad_cam_map
from mechinterp.explain.words import WordExplanation, explain_in_words
from mechinterp.explain.surrogate import ActivationFeatures, Surrogate, fit_surrogate, local_surrogate

__all__ = [
    "ActivationFeatures",
    "Counterfactual",
    "GlobalView",
    "GradCam",
    "Surrogate",
    "aggregate",
    "counterfactual",
    "global_attribution",
    "fit_surrogate",
    "grad_cam",
    "grad_cam_map",
    "local_surrogate",
    "WordExplanation",
    "explain_in_words",
]
