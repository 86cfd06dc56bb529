"""Explanations beyond attribution: counterfactuals, surrogates, Grad-CAM, global views, words, CoT.

* :func:`counterfactual` — the smallest token edit that changes the prediction (substitutions;
  ``edits=`` adds deletions and insertions, :mod:`mechinterp.explain.edits`): HotFlip-ranked
  candidates, verified by batched forward passes; fixed tokens, allowed vocabulary, fluency.
* :func:`fit_surrogate` — a decision tree or sparse linear model imitating the LM on a task
  distribution, with held-out fidelity; :func:`local_surrogate` is LIME (from
  :mod:`mechinterp.attribution`).
* :func:`grad_cam` — Grad-CAM at a layer's token activations, per layer and combined.
* :func:`global_attribution` / :func:`aggregate` — attributions over a dataset by token,
  position or ground truth, with confidence intervals.
* :func:`explain_in_words` — a plain-language summary whose every number is cited evidence.
* :func:`cot_faithfulness` — how much the answer depends on the scratchpad (truncation,
  one corrupted step, filler).

This family imports ``core``, ``viz`` and ``errors``, and the public API of
:mod:`mechinterp.attribution` (targets, ``attribute``, LIME) inside the functions that use it.

Example:
    >>> import mechinterp
    >>> from mechinterp.explain import counterfactual
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> cf = counterfactual(model, "The capital of France is", target="Rome")  # doctest: +SKIP
"""

from mechinterp.explain.cot import CoTFaithfulness, cot_faithfulness
from mechinterp.explain.counterfactual import DEFAULT_EDITS, Counterfactual, counterfactual
from mechinterp.explain.edits import EDIT_KINDS
from mechinterp.explain.global_view import GlobalView, aggregate, global_attribution
from mechinterp.explain.gradcam import GradCam, grad_cam, grad_cam_map
from mechinterp.explain.surrogate import ActivationFeatures, Surrogate, fit_surrogate, local_surrogate
from mechinterp.explain.words import WordExplanation, explain_in_words

__all__ = [
    "DEFAULT_EDITS",
    "EDIT_KINDS",
    "ActivationFeatures",
    "CoTFaithfulness",
    "Counterfactual",
    "GlobalView",
    "GradCam",
    "Surrogate",
    "WordExplanation",
    "aggregate",
    "cot_faithfulness",
    "counterfactual",
    "explain_in_words",
    "fit_surrogate",
    "global_attribution",
    "grad_cam",
    "grad_cam_map",
    "local_surrogate",
]
