"""Sparse dictionaries: sparse autoencoders and transcoders trained on the shared cache.

* :class:`SparseAutoencoder` — the module (standard/ReLU, TopK, JumpReLU; transcoders),
  with SAELens's parameter names;
* :func:`train_sae` + :class:`TrainConfig` — training from a :class:`~mechinterp.SharedCache`
  site through a bounded shuffle buffer (:class:`ActivationStream`);
* :func:`save_sae` / :func:`load_sae` — the SAELens 6 checkpoint format;
* :func:`splice` — run the model with the SAE at its site (error term kept or dropped);
* :func:`evaluate_sae` — L0, explained variance, CE loss recovered, KL, dead/dense latents;
* :mod:`~mechinterp.dictionary.synthetic` — activations with known features, and the
  compiled features of the zoo's tracr models (:func:`match_categorical_features`).

Example:
    >>> import mechinterp
    >>> from mechinterp import dictionary
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> cache = mechinterp.SharedCache(model, ["the cat sat on the mat"] * 8)
    >>> sae = dictionary.train_sae(cache, ("resid_post", 0), k=4, expansion_factor=2, batch_size=16)
    >>> with dictionary.splice(model, sae):  # doctest: +SKIP
    ...     logits = model("the cat sat")
"""

from mechinterp.dictionary.activations import ActivationStream
from mechinterp.dictionary.evaluate import evaluate_sae
from mechinterp.dictionary.results import SAEEvaluation, TrainingLog
from mechinterp.dictionary.sae import ARCHITECTURES, SparseAutoencoder
from mechinterp.dictionary.saelens import load_sae, save_sae
from mechinterp.dictionary.splice import SpliceState, splice
from mechinterp.dictionary.synthetic import (
    match_categorical_features,
    match_directions,
    superposition_data,
    tracr_residual_labels,
)
from mechinterp.dictionary.train import TrainConfig, geometric_median, train_sae

__all__ = [
    "ARCHITECTURES",
    "ActivationStream",
    "SAEEvaluation",
    "SparseAutoencoder",
    "SpliceState",
    "TrainConfig",
    "TrainingLog",
    "evaluate_sae",
    "geometric_median",
    "load_sae",
    "match_categorical_features",
    "match_directions",
    "save_sae",
    "splice",
    "superposition_data",
    "tracr_residual_labels",
    "train_sae",
]
