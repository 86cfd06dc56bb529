"""Activation maximisation: what makes a neuron, head, dimension or direction fire.

* Targets (:mod:`mechinterp.features.targets`): :func:`neuron`, :func:`dimension`,
  :func:`direction` (e.g. a probe's), :func:`head_norm`, :func:`site_reduction`.
* :func:`max_activating_examples` — the top-k dataset contexts, streamed over a prompt set
  with bounded memory, each with its per-token activations for highlighting.
* :func:`optimise_input` — a gradient-guided coordinate search (GCG/AutoPrompt style) for
  token sequences that maximise the target, reported against the best dataset example.

A family of its own (not inside :mod:`mechinterp.lens`): it reads any site, not only the
residual stream through the output head, and its results are about inputs, not layers.

Example:
    >>> import mechinterp
    >>> from mechinterp.features import dimension, max_activating_examples
    >>> model = mechinterp.load("zoo:tracr-frac-prevs")
    >>> top = max_activating_examples(model, ["x x w", "w x y", "y y x"], dimension(model, "resid_post", 1, 0), k=2)
    >>> top.values.tolist()
    [1.0, 1.0]
"""

from mechinterp.features.maxact import max_activating_examples
from mechinterp.features.optimise import optimise_input
from mechinterp.features.result import MaxActivations, OptimisedInput
from mechinterp.features.targets import ActivationTarget, dimension, direction, head_norm, neuron, site_reduction

__all__ = [
    "ActivationTarget",
    "MaxActivations",
    "OptimisedInput",
    "dimension",
    "direction",
    "head_norm",
    "max_activating_examples",
    "neuron",
    "optimise_input",
    "site_reduction",
]
