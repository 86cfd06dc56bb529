"""Activations with known sparse features: the ground truth an SAE must recover.

:func:`superposition_data` draws ``n_features`` random unit directions in ``d`` dimensions
(``n_features > d`` puts them in superposition, as in Elhage et al. 2022's toy model), and
activations ``x = Σ_i c_i · direction_i + noise`` with sparse non-negative coefficients
``c_i`` (each feature present with probability ``p``, magnitude uniform in [0.5, 1.5]).
:func:`match_directions` scores learned decoder rows against the true directions (mean max
cosine similarity, the usual recovery metric).

Example:
    >>> from mechinterp.dictionary.synthetic import superposition_data
    >>> x, directions, coefficients = superposition_data(1000, d=16, n_features=32, p=0.05)
    >>> x.shape, directions.shape
    (torch.Size([1000, 16]), torch.Size([32, 16]))
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.validation import check_count, check_positive
from mechinterp.errors import MechinterpError

__all__ = ["superposition_data", "match_directions"]


def superposition_data(
    n: int, d: int, n_features: int, p: float = 0.05, noise: float = 0.01, seed: int = 0, offset: bool = True
) -> tuple[Float[Tensor, "n d"], Float[Tensor, "n_features d"], Float[Tensor, "n n_features"]]:
    """``n`` activations built from ``n_features`` known sparse directions.

    Returns:
        ``(x, directions, coefficients)``: ``x = coefficients @ directions + offset + noise``
        (a fixed random offset when ``offset``, like the mean of a real residual stream).
    """
    for name, value in (("n", n), ("d", d), ("n_features", n_features)):
        check_count(value, name)
    if not check_positive(p, "p") <= 1:
        raise MechinterpError(f"p is a firing probability in (0, 1], got {p!r}.")
    check_positive(noise, "noise", allow_zero=True)
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(n_features, d, generator=g)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    present = torch.rand(n, n_features, generator=g) < p
    coefficients = present * (0.5 + torch.rand(n, n_features, generator=g))
    x = coefficients @ directions + noise * torch.randn(n, d, generator=g) / d**0.5
    if offset:
        x = x + 0.5 * torch.randn(d, generator=g) / d**0.5
    return x, directions, coefficients


def match_directions(true: Float[Tensor, "n_true d"], learned: Float[Tensor, "n_learned d"]) -> tuple[float, Tensor]:
    """Mean over true directions of the best cosine similarity with any learned one.

    Returns:
        ``(mean, best)`` with ``best[i]`` the max cosine of true direction ``i``.
    """
    true, learned = true.detach(), learned.detach()
    t = true / true.norm(dim=-1, keepdim=True)
    lr = learned / learned.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    best = (t @ lr.T).max(-1).values
    return float(best.mean()), best
