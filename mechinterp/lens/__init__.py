"""Inside the residual stream: logit lens, tuned lens, direct logit attribution, steering.

* :func:`logit_lens` — every layer's residual through the final norm and unembedding:
  top-k tokens, answer probability and rank, KL to the final distribution, per layer;
  :func:`answer_lens` reads only the answer logit (difference), without decoding the vocabulary.
* :class:`TunedLens` — Belrose et al. (2023): one affine (or bias-only) translator per
  layer, trained on cached residuals to minimise KL to the final logits;
  :func:`compare_lenses` scores lenses on held-out text (KL and perplexity per layer).
* :func:`direct_logit_attribution` — each head's, MLP's (or neuron's) direct contribution
  to a logit or logit difference, with the final norm's scale frozen at the clean run; the
  parts plus the bias constant sum exactly to the logit.
* :func:`contrastive_vector`, :func:`steering_hooks`, :func:`steered_generate`,
  :func:`steering_sweep` — activation addition
  (on :class:`~mechinterp.core.intervention.Intervention`, :func:`steering_intervention`) (Turner et al. 2023; Rimsky et al. 2024).

All read activations from :class:`~mechinterp.core.cache.SharedCache`, so one cached
pass serves the lens and DLA together.

Example:
    >>> import mechinterp
    >>> from mechinterp import lens
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> res = lens.logit_lens(model, ["The capital of France is"], answers="Paris")
    >>> res.rows[-1]
    'resid_post 3'
"""

from mechinterp.lens.answer_lens import AnswerLensResult, answer_lens
from mechinterp.lens.dla import check_exact, direct_logit_attribution, dla_sites
from mechinterp.lens.logit_lens import lens_readout, logit_lens
from mechinterp.lens.readout import decode, norm_linear, residual_rows
from mechinterp.lens.results import DLAResult, LensComparison, LensResult, SteeringSweep
from mechinterp.lens.steering import (
    SteeringVector,
    contrastive_vector,
    steered_generate,
    steering_hooks,
    steering_intervention,
    steering_sweep,
)
from mechinterp.lens.tuned import TunedLens, compare_lenses

__all__ = [
    "AnswerLensResult",
    "DLAResult",
    "LensComparison",
    "LensResult",
    "SteeringSweep",
    "SteeringVector",
    "TunedLens",
    "answer_lens",
    "check_exact",
    "compare_lenses",
    "contrastive_vector",
    "decode",
    "direct_logit_attribution",
    "dla_sites",
    "lens_readout",
    "logit_lens",
    "norm_linear",
    "residual_rows",
    "steered_generate",
    "steering_hooks",
    "steering_intervention",
    "steering_sweep",
]
