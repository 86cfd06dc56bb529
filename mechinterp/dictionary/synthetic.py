"""Activations with known sparse features: the ground truth an SAE must recover.

:func:`superposition_data` draws ``n_features`` random unit directions in ``d`` dimensions
(``n_features > d`` puts them in superposition, as in Elhage et al. 2022's toy model), and
activations ``x = Σ_i c_i · direction_i + noise`` with sparse non-negative coefficients
``c_i`` (each feature present with probability ``p``, magnitude uniform in [0.5, 1.5]).
:func:`match_directions` scores learned decoder rows against the true directions (mean max
cosine similarity, the usual recovery metric).

Compiled features: a tracr model's residual stream has one direction per value of each
categorical RASP variable (``tokens:1``, ``indices:3``...; :func:`tracr_residual_labels`
reads the layout from the zoo card). Exactly one value of each variable is on at every
token; :func:`match_categorical_features` scores decoder rows against the compiled values
where the data varies, and :func:`detect_categorical_features` scores latents as detectors of
each value (best F1 of "latent active" against "value on", the coverage metric of Karvonen et
al. 2024). See ``tests/dictionary/test_tracr.py`` for what SAEs do on each tracr model.

Example:
    >>> from mechinterp.dictionary.synthetic import superposition_data
    >>> x, directions, coefficients = superposition_data(1000, d=16, n_features=32, p=0.05)
    >>> x.shape, directions.shape
    (torch.Size([1000, 16]), torch.Size([32, 16]))
"""

from __future__ import annotations

import re

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.validation import check_count, check_positive
from mechinterp.core.zoo_format import card
from mechinterp.errors import MechinterpError

__all__ = [
    "superposition_data",
    "match_directions",
    "tracr_residual_labels",
    "match_categorical_features",
    "detect_categorical_features",
]


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


def tracr_residual_labels(name: str) -> list[str]:
    """The residual-stream layout of a compiled (tracr) zoo model: one label per dimension, e.g. ``"tokens:1"``.

    Example:
        >>> tracr_residual_labels("tracr-reverse")[:2]
        ['indices:0', 'indices:1']
    """
    found = re.search(r"Residual stream \(`d_model=(\d+)`[^\n]*\n`([^`]*)`", card(name))
    if found is None:
        raise MechinterpError(f"The card of zoo model {name!r} lists no compiled residual layout; pass a tracr model "
                              "(e.g. 'tracr-reverse').")
    labels = [s.strip() for s in found.group(2).split(",")]
    if len(labels) != int(found.group(1)):
        raise MechinterpError(f"The card of {name!r} lists {len(labels)} residual labels for d_model={found.group(1)}.")
    return labels


def match_categorical_features(
    decoder: Float[Tensor, "d_sae d_model"], labels: list[str], activations: Float[Tensor, "n d_model"]
) -> dict[str, float]:
    """For each categorical compiled value, the best cosine of a decoder row with it, where the data varies.

    Both the decoder rows and the value's basis vector ``e_v`` are projected onto the span
    of the centred ``activations`` (a direction along which the data never varies, such as
    the all-ones direction of a one-hot block, is invisible to any method that learns from
    activations; it lives in the bias); the score is the largest cosine over decoder rows.
    For a block of ``m`` equally frequent values, a row for another value of the same
    variable scores ``-1/(m-1)`` and a row for the difference ``e_v - e_w`` (value ``w``
    kept in the bias) ``sqrt(m/(2(m-1)))``: 0.87 for ``m = 3``, 0.79 for ``m = 5``.

    Args:
        decoder: the decoder rows (``sae.W_dec``) in the model's residual basis.
        labels: the residual labels (:func:`tracr_residual_labels`); ``"name:value"`` are
            categorical, others numerical (skipped).
        activations: the activations the dictionary was trained on; values never on
            (``> 0.5``) in them, or always on, are not scored.

    Returns:
        ``{label: best cosine}`` for every scored categorical value.
    """
    decoder, activations = decoder.detach().float(), activations.detach().float()
    if decoder.shape[-1] != len(labels) or activations.shape[-1] != len(labels):
        raise MechinterpError(f"decoder rows ({decoder.shape[-1]}) and activations ({activations.shape[-1]}) must both have "
                              f"one entry per label ({len(labels)} labels).")
    centred = activations - activations.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    basis = vh[: int((s > 1e-4 * s[0]).sum())]  # [rank, d_model]: where the data varies
    rows = decoder @ basis.T
    rows = rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    on = activations.abs() > 0.5
    scores: dict[str, float] = {}
    for j, label in enumerate(labels):
        if ":" not in label or not bool(on[:, j].any()) or bool(on[:, j].all()):
            continue
        target = basis[:, j] / basis[:, j].norm().clamp_min(1e-12)
        scores[label] = float((rows @ target).max())
    return scores


def detect_categorical_features(
    codes: Float[Tensor, "n d_sae"], labels: list[str], activations: Float[Tensor, "n d_model"]
) -> dict[str, float]:
    """For each categorical compiled value, the best F1 of one latent as a detector of it.

    A latent "detects" value ``v`` on a token when it is active (``> 0``); F1 compares that
    with "``v`` is on" (its residual entry ``> 0.5``) over the tokens. Unlike decoder cosines,
    this does not change when a dictionary moves a shared shift between its decoder rows and
    its bias, so it says whether a latent *fires* for the value and only for it.

    Args:
        codes: the latent activations on ``activations`` (``sae.encode(activations)``).
        labels: the residual labels (:func:`tracr_residual_labels`).
        activations: the residual activations, one row per token.

    Returns:
        ``{label: best F1}`` for every categorical value that is on for some tokens but not all.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> detect_categorical_features(x, ["a:0", "a:1"], x)
        {'a:0': 1.0, 'a:1': 1.0}
    """
    if codes.shape[0] != activations.shape[0] or activations.shape[-1] != len(labels):
        raise MechinterpError(f"codes ({codes.shape[0]} rows) and activations ({activations.shape[0]} rows, "
                              f"{activations.shape[-1]} columns) must cover the same tokens, one column per label "
                              f"({len(labels)} labels).")
    active = (codes.detach() > 0).float()
    scores: dict[str, float] = {}
    for j, label in enumerate(labels):
        on = (activations[:, j].detach() > 0.5).float()
        if ":" not in label or not bool(on.any()) or bool(on.all()):
            continue
        hits = on @ active  # [d_sae]
        precision, recall = hits / active.sum(0).clamp_min(1), hits / on.sum()
        scores[label] = float((2 * precision * recall / (precision + recall).clamp_min(1e-12)).max())
    return scores
