"""LIME for token features (Ribeiro et al., 2016) with a sparse linear surrogate.

Samples are made as LIME's text explainer makes them: the first is the whole prompt, each
other one removes a uniformly drawn number ``k ∈ [1, n-1]`` of random features. Each
sample is weighted by ``sqrt(exp(-d² / width²))`` with ``d`` the cosine distance of its
mask to the all-ones mask times 100 (LIME's text defaults: width 25). A Lasso surrogate
(scikit-learn, ``alpha``) is fitted per target; its coefficients are the scores and its
weighted R² (``metadata["r2"]``) says how well a linear model explains the target locally.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from mechinterp.attribution.base import prepare_prompt, register_method
from mechinterp.attribution.perturbation import AbstractPerturbationMethod
from mechinterp.attribution.result import TokenAttribution
from mechinterp.errors import MechinterpError

__all__ = ["Lime", "lime_samples", "fit_surrogate"]


def lime_samples(n: int, n_samples: int, seed: int = 0, kernel_width: float = 25.0
                 ) -> tuple[Bool[Tensor, "n_samples n"], Float[Tensor, " n_samples"]]:
    """LIME-text masks (row 0 keeps everything) and their kernel weights."""
    rng = np.random.default_rng(seed)
    masks = np.ones((n_samples, n), dtype=bool)
    if n > 1:
        for r in range(1, n_samples):
            k = rng.integers(1, n)
            masks[r, rng.choice(n, size=k, replace=False)] = False
    else:
        masks[1:, 0] = False
    kept = masks.sum(1)
    cosine = 1 - kept / np.sqrt(kept.clip(min=1) * n)
    cosine[kept == 0] = 1.0
    weights = np.sqrt(np.exp(-((cosine * 100) ** 2) / kernel_width**2))
    return torch.from_numpy(masks), torch.from_numpy(weights)


def fit_surrogate(masks: Tensor, values: Tensor, weights: Tensor, alpha: float = 1e-3
                  ) -> tuple[Float[Tensor, "n_targets n"], Float[Tensor, " n_targets"], Float[Tensor, " n_targets"]]:
    """Weighted Lasso of ``values [m, n_targets]`` on ``masks [m, n]``.

    Returns:
        ``(coefficients [n_targets, n], intercepts [n_targets], weighted R² [n_targets])``.
    """
    from mechinterp.core.rng import keep_global_rng

    with keep_global_rng():  # the first import of sklearn.linear_model draws Python random bits (rich)
        from sklearn.linear_model import Lasso, LinearRegression

    x = masks.double().numpy()
    w = weights.double().numpy()
    coefs, intercepts, r2 = [], [], []
    for t in range(values.shape[1]):
        y = values[:, t].double().numpy()
        # random_state: Lasso's coordinate descent draws a seed from NumPy's global state otherwise
        model = (Lasso(alpha=alpha, max_iter=20000, random_state=0) if alpha > 0 else LinearRegression())
        model.fit(x, y, sample_weight=w)
        coefs.append(model.coef_)
        intercepts.append(model.intercept_)
        r2.append(model.score(x, y, sample_weight=w))
    return (torch.tensor(np.array(coefs)), torch.tensor(np.array(intercepts)), torch.tensor(np.array(r2)))


@register_method("lime")
class Lime(AbstractPerturbationMethod):
    """LIME with a sparse (Lasso) linear surrogate; reports the surrogate's weighted R².

    Args:
        n_samples: perturbed prompts (forward passes).
        alpha: Lasso penalty (0: ordinary least squares).
        kernel_width: LIME's kernel width on the cosine distance × 100.
        seed: sampling seed.
        features, replacement, batch_size: see :class:`~mechinterp.attribution.occlusion.Occlusion`.
    """

    counts = ("n_samples", "batch_size")
    positive = ("kernel_width",)
    non_negative = ("alpha",)

    def __init__(self, n_samples: int = 500, alpha: float = 1e-3, kernel_width: float = 25.0, seed: int = 0,
                 features: Any = "token", replacement: str | int = "auto", batch_size: int = 128) -> None:
        self.n_samples = n_samples
        self.alpha = alpha
        self.kernel_width = kernel_width
        self.seed = seed
        self.features = features
        self.replacement = replacement
        self.batch_size = batch_size

    def attribute(self, model: Any, prompt: str | Tensor, target: Any) -> TokenAttribution:
        if self.n_samples < 2 or self.alpha < 0:
            raise MechinterpError(f"LIME needs n_samples >= 2 and alpha >= 0 (got {self.n_samples}, {self.alpha}).")
        prep = prepare_prompt(model, prompt, target)
        scorer, groups, labels = self._scorer(model, prep)
        masks, weights = lime_samples(scorer.n_features, self.n_samples, self.seed, self.kernel_width)
        values = scorer(masks)
        coefs, intercepts, r2 = fit_surrogate(masks, values, weights, self.alpha)
        meta = {"r2": r2.tolist(), "intercept": intercepts.tolist(), "target_values": values[0].tolist(),
                "n_nonzero": (coefs != 0).sum(1).tolist(), "n_forward": int(self.n_samples)}
        return self._feature_result(prep, coefs, groups, labels, meta)
