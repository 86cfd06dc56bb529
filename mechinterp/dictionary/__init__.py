"""Sparse dictionaries: sparse autoencoders and transcoders trained on the shared cache.

* :class:`SparseAutoencoder` — the module (standard/ReLU, TopK, JumpReLU; transcoders),
  with SAELens's parameter names;
* :func:`train_sae` + :class:`TrainConfig` — training from a :class:`~mechinterp.SharedCache`
  site through a bounded shuffle buffer (:class:`ActivationStream`);
* :func:`save_sae` / :func:`load_sae` — the SAELens 6 checkpoint format;
* :func:`splice` — run the model with the SAE at its site (error term kept or dropped);
* :func:`evaluate_sae` — L0, explained variance, CE loss recovered, KL, dead/dense latents;
* :mod:`~mechinterp.dictionary.synthetic` — activations with known features, and the
  compiled features of the zoo's tracr models (:func:`match_categorical_features`,
  :func:`detect_categorical_features`).

Feature-level methods (an SAE spliced at its site, error term kept):

* :func:`feature_patch` — patch or ablate latents (one at a time, per position, or as a set),
  stacked in few passes; returns patching's :class:`~mechinterp.patching.PatchResult`;
* :func:`feature_attribution` — attribution patching over latents and error terms at
  several sites (sparse feature circuits); :func:`latent_mask_gradient` is the same as the
  gradient of the latent-mask objective;
* :func:`latent_dla`, :func:`logit_effects` — a latent's direct logit contribution and the
  tokens its decoder direction promotes;
* :func:`steer_latent`, :func:`latent_intervention`, :func:`latent_steering_vector` — add,
  clamp or scale a latent (through :class:`~mechinterp.core.intervention.Intervention`);
* :func:`latent_dashboard` — max-activating examples, density and logit effects per latent,
  as an offline HTML page.

Example:
    >>> import mechinterp
    >>> from mechinterp import dictionary
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> cache = mechinterp.SharedCache(model, ["the cat sat on the mat"] * 8)
    >>> sae = dictionary.train_sae(cache, ("resid_post", 0), k=4, expansion_factor=2, batch_size=16)
    >>> with dictionary.splice(model, sae):  # doctest: +SKIP
    ...     logits = model("the cat sat")
"""

from mechinterp.dictionary.activations import ActivationStream, massive_norm
from mechinterp.dictionary.dashboard import LatentDashboard, latent_dashboard
from mechinterp.dictionary.evaluate import evaluate_sae
from mechinterp.dictionary.feature_attribution import feature_attribution, latent_mask_gradient
from mechinterp.dictionary.feature_patching import feature_patch
from mechinterp.dictionary.feature_results import FeatureAttribution, LatentDLA, LogitEffects
from mechinterp.dictionary.latent_dla import latent_dla, logit_effects
from mechinterp.dictionary.latent_steering import latent_intervention, latent_steering_vector, steer_latent
from mechinterp.dictionary.results import SAEEvaluation, TrainingLog
from mechinterp.dictionary.sae import ARCHITECTURES, SparseAutoencoder
from mechinterp.dictionary.saelens import load_sae, save_sae
from mechinterp.dictionary.splice import SpliceState, splice
from mechinterp.dictionary.synthetic import (
    detect_categorical_features,
    match_categorical_features,
    match_directions,
    superposition_data,
    tracr_residual_labels,
)
from mechinterp.dictionary.train import TrainConfig, geometric_median, train_sae

__all__ = [
    "ARCHITECTURES",
    "ActivationStream",
    "massive_norm",
    "FeatureAttribution",
    "LatentDLA",
    "LatentDashboard",
    "LogitEffects",
    "SAEEvaluation",
    "SparseAutoencoder",
    "SpliceState",
    "TrainConfig",
    "TrainingLog",
    "evaluate_sae",
    "feature_attribution",
    "feature_patch",
    "geometric_median",
    "latent_dashboard",
    "latent_dla",
    "latent_intervention",
    "latent_mask_gradient",
    "latent_steering_vector",
    "load_sae",
    "logit_effects",
    "match_categorical_features",
    "detect_categorical_features",
    "match_directions",
    "save_sae",
    "splice",
    "steer_latent",
    "superposition_data",
    "tracr_residual_labels",
    "train_sae",
]
