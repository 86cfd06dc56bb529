"""Shapley values of token features: exact by enumeration, and KernelSHAP by sampling.

The game: ``v(S) = F(x_S)``, the target with the features outside ``S`` replaced by the
replacement token. The Shapley value of feature ``i`` among ``n`` is

    φ_i = Σ_{S ⊆ N \\ {i}} |S|! (n - |S| - 1)! / n! · (v(S ∪ {i}) - v(S)),

and efficiency says ``Σ_i φ_i = v(N) - v(∅)``. :func:`exact_shapley` enumerates all
``2^n`` coalitions in batched forward passes (up to ``max_features``, 14 by default:
16,384 passes). :func:`kernel_shap` (Lundberg & Lee, 2017) samples coalitions from the
Shapley kernel (sizes ``s`` with probability ∝ ``(n-1) / (s (n-s))``, each with its
complement) and solves the weighted least-squares problem under the efficiency
constraint; when the budget covers all coalitions it enumerates them with the exact kernel
weights, which gives the exact Shapley values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from mechinterp.attribution.base import prepare_prompt, register_method
from mechinterp.attribution.perturbation import AbstractPerturbationMethod
from mechinterp.attribution.result import TokenAttribution
from mechinterp.errors import EmptyInputError, MechinterpError

__all__ = ["ShapleyValues", "KernelShap", "exact_shapley", "kernel_shap", "all_coalitions"]

ValueFn = Callable[[Bool[Tensor, "m n_features"]], Float[Tensor, "m n_targets"]]


def all_coalitions(n: int) -> Bool[Tensor, "two_pow_n n"]:
    """Every subset of ``n`` features as a boolean mask; row ``k`` is the binary expansion of ``k``."""
    codes = torch.arange(2**n, dtype=torch.long).unsqueeze(1)
    return (codes >> torch.arange(n).unsqueeze(0)) & 1 == 1


def exact_shapley(value_fn: ValueFn, n: int) -> tuple[Float[Tensor, "n_targets n"], Float[Tensor, "two_pow_n n_targets"]]:
    """Exact Shapley values by enumerating all ``2^n`` coalitions.

    Returns:
        ``(phi [n_targets, n], values [2^n, n_targets])``; ``values[0]`` is v(∅), ``values[-1]`` v(N).

    Example:
        >>> phi, _ = exact_shapley(lambda m: (m.double() @ torch.tensor([[1.0], [2.0]], dtype=torch.float64)), 2)
        >>> phi
        tensor([[1., 2.]], dtype=torch.float64)
    """
    masks = all_coalitions(n)
    values = torch.as_tensor(value_fn(masks), dtype=torch.float64)  # [2^n, n_targets]
    sizes = masks.sum(1)
    weight = torch.tensor([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)],
                          dtype=torch.float64)
    codes = torch.arange(2**n)
    phi = torch.zeros(values.shape[1], n, dtype=torch.float64)
    for i in range(n):
        without = codes[~masks[:, i]]
        with_i = without | (1 << i)
        w = weight[sizes[without]]
        phi[:, i] = (w.unsqueeze(1) * (values[with_i] - values[without])).sum(0)
    return phi, values


def _kernel_weight(n: int, s: int) -> float:
    return (n - 1) / (math.comb(n, s) * s * (n - s))


def kernel_shap(value_fn: ValueFn, n: int, n_samples: int = 2048, seed: int = 0
                ) -> tuple[Float[Tensor, "n_targets n"], dict[str, Any]]:
    """KernelSHAP estimate of the Shapley values (exact when ``n_samples >= 2^n - 2``).

    Returns:
        ``(phi [n_targets, n], info)`` with ``info["n_coalitions"]`` and ``info["exact"]``.
    """
    if n < 1:
        raise EmptyInputError("KernelSHAP needs at least one feature.")
    ends = torch.as_tensor(value_fn(torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])),
                           dtype=torch.float64)
    v0, v1 = ends[0], ends[1]
    if n == 1:
        return (v1 - v0).unsqueeze(1), {"n_coalitions": 2, "exact": True}
    exact = n_samples >= 2**n - 2
    if exact:
        masks = all_coalitions(n)[1:-1]
        sizes = masks.sum(1)
        weights = torch.tensor([_kernel_weight(n, int(s)) for s in sizes], dtype=torch.float64)
    else:
        rng = np.random.default_rng(seed)
        probs = np.array([(n - 1) / (s * (n - s)) for s in range(1, n)])
        probs /= probs.sum()
        half = max(1, n_samples // 2)
        sizes_np = rng.choice(np.arange(1, n), size=half, p=probs)
        rows = np.zeros((half, n), dtype=bool)
        for r, s in enumerate(sizes_np):
            rows[r, rng.choice(n, size=s, replace=False)] = True
        masks = torch.from_numpy(np.concatenate([rows, ~rows]))
        weights = torch.ones(masks.shape[0], dtype=torch.float64)
    values = torch.as_tensor(value_fn(masks), dtype=torch.float64)  # [m, n_targets]
    z = masks.double()
    gap = v1 - v0  # [n_targets]
    # Efficiency constraint: φ_last = gap - Σ_{j<last} φ_j.
    y = values - v0 - z[:, -1:] * gap  # [m, n_targets]
    a = z[:, :-1] - z[:, -1:]  # [m, n - 1]
    sw = weights.sqrt().unsqueeze(1)
    sol = torch.linalg.lstsq(a * sw, y * sw).solution  # [n - 1, n_targets]
    phi = torch.cat([sol, (gap - sol.sum(0)).unsqueeze(0)]).T
    return phi, {"n_coalitions": int(masks.shape[0]) + 2, "exact": exact}


@register_method("shapley", "exact_shapley")
class ShapleyValues(AbstractPerturbationMethod):
    """Exact Shapley values of features (tokens, words or spans) by enumeration.

    Args:
        max_features: refuse more features than this (``2^n`` forward passes); use
            ``method="kernel_shap"`` or group tokens into words/spans instead.
        features, replacement, batch_size: see :class:`~mechinterp.attribution.occlusion.Occlusion`.

    Example:
        >>> res = attribute(model, "w1 w2 w3 w4", "w5", method="shapley")  # doctest: +SKIP
        >>> res.scores.sum(), res.metadata["target_values"][0] - res.metadata["baseline_values"][0]  # doctest: +SKIP
    """

    counts = ("max_features", "batch_size")

    def __init__(self, max_features: int = 14, features: Any = "token", replacement: str | int = "auto",
                 batch_size: int = 256) -> None:
        self.max_features = max_features
        self.features = features
        self.replacement = replacement
        self.batch_size = batch_size

    def attribute(self, model: Any, prompt: str | Tensor, target: Any) -> TokenAttribution:
        prep = prepare_prompt(model, prompt, target)
        scorer, groups, labels = self._scorer(model, prep)
        n = scorer.n_features
        if n > self.max_features:
            raise MechinterpError(
                f"Exact Shapley values over {n} features need 2^{n} = {2**n:,} forward passes (the limit is "
                f"max_features={self.max_features}). Use method='kernel_shap' (sampling), group tokens with "
                "features='word' or spans, or raise max_features."
            )
        phi, values = exact_shapley(scorer, n)
        meta = {"target_values": values[-1].tolist(), "baseline_values": values[0].tolist(),
                "efficiency_gap": (phi.sum(1) - (values[-1] - values[0])).tolist(), "n_forward": 2**n}
        return self._feature_result(prep, phi, groups, labels, meta)


@register_method("kernel_shap")
class KernelShap(AbstractPerturbationMethod):
    """KernelSHAP: sampled coalitions, weighted least squares with the efficiency constraint.

    Args:
        n_samples: coalitions to evaluate (paired with complements); at ``>= 2^n - 2`` the
            result is exact.
        seed: sampling seed.
        features, replacement, batch_size: as for :class:`ShapleyValues`.
    """

    counts = ("n_samples", "batch_size")

    def __init__(self, n_samples: int = 2048, seed: int = 0, features: Any = "token", replacement: str | int = "auto",
                 batch_size: int = 256) -> None:
        self.n_samples = n_samples
        self.seed = seed
        self.features = features
        self.replacement = replacement
        self.batch_size = batch_size

    def attribute(self, model: Any, prompt: str | Tensor, target: Any) -> TokenAttribution:
        if self.n_samples < 2:
            raise MechinterpError(f"n_samples must be >= 2 (got {self.n_samples}).")
        prep = prepare_prompt(model, prompt, target)
        scorer, groups, labels = self._scorer(model, prep)
        phi, info = kernel_shap(scorer, scorer.n_features, self.n_samples, self.seed)
        return self._feature_result(prep, phi, groups, labels, {**info, "n_forward": scorer.n_calls})
