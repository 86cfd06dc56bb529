"""Fitting many linear probes at once: one per layer (or layer × position), in one batch.

A sweep fits the same kind of probe on ``cells`` feature matrices (one per layer and
position) with the same labels. Doing them in a Python loop costs one optimiser run per
cell; here every cell is a slice of one batched parameter tensor ``W[cells, d_model, k]``
and one optimiser run fits them all, on CPU or GPU:

* **logistic** — the objective of scikit-learn's ``LogisticRegression`` per cell (L2,
  ``C``, unpenalised intercept; a sigmoid for two classes, softmax for more), on
  standardised features as ``StandardScaler`` would give. Binary probes are minimised by
  batched Newton steps (:mod:`mechinterp.probes.newton`, ~10 steps), multi-class ones by
  L-BFGS over all cells jointly: cells are independent, so the sum of their objectives has
  the same minimiser as each one alone.
* **ridge** — the closed form of scikit-learn's ``Ridge`` (centred, ``alpha``).
* **mass-mean** — class means (Marks & Tegmark 2023); the decision is the nearest class
  mean, ``argmax_k  mu_k . x - |mu_k|^2 / 2``, which for two classes is the sign of
  ``(mu_1 - mu_0) . x`` against the midpoint.

Features may be memory-mapped and larger than memory: with ``chunk_rows`` every pass over
the data (statistics, each L-BFGS evaluation) reads row chunks through
:func:`~mechinterp.probes.memory.iter_rows`, accumulating exact full-batch gradients.

Example:
    >>> X = torch.randn(3, 200, 16)  # [cells, n, d]
    >>> y = (X[..., 0] > 0).long()  # [cells, n]
    >>> heads = fit_logistic(X, y, n_classes=2)
    >>> heads.accuracy(X, y).shape
    torch.Size([3])
"""

from __future__ import annotations

import math

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.probes.memory import iter_rows
from mechinterp.probes.newton import newton_binary, newton_fits
from mechinterp.probes.validation import ProbeInputError, ProbeShapeError, check_C, check_finite, check_max_iter

__all__ = ["LinearHeads", "fit_logistic", "fit_ridge", "fit_mass_mean", "Features"]

Features = Float[Tensor, "cells n d"] | Sequence[Float[Tensor, "n d"]]


@dataclass
class LinearHeads:
    """Fitted linear maps for ``cells`` probes, in the original (unscaled) feature space.

    Attributes:
        weight: ``[cells, d, k]``; ``k = 1`` for binary logistic and regression, else one
            column per class.
        bias: ``[cells, k]``.
        kind: ``"logistic"``, ``"ridge"`` or ``"mass-mean"``.
        n_classes: classes (0 for regression).
        n_iter: optimiser iterations used (logistic).
    """

    weight: Float[Tensor, "cells d k"]
    bias: Float[Tensor, "cells k"]
    kind: str
    n_classes: int
    n_iter: int = 0

    def decision(self, x: Float[Tensor, "cells n d"]) -> Float[Tensor, "cells n k"]:
        """Scores ``x @ W + b`` per cell."""
        x = x.to(self.weight.device, self.weight.dtype)
        return torch.baddbmm(self.bias[:, None, :], x, self.weight)

    def predict(self, x: Float[Tensor, "cells n d"]) -> Tensor:
        """Class codes ``[cells, n]`` (classification) or values ``[cells, n]`` (ridge)."""
        return self.predict_from_scores(self.decision(x))

    def predict_from_scores(self, scores: Float[Tensor, "cells n k"]) -> Tensor:
        if self.kind == "ridge":
            return scores[..., 0]
        if scores.shape[-1] == 1:
            return (scores[..., 0] > 0).long()
        return scores.argmax(-1)

    def accuracy(self, x: Float[Tensor, "cells n d"], y: Int[Tensor, "cells n"] | Int[Tensor, " n"]) -> Float[Tensor, " cells"]:
        """Fraction of correct predictions per cell."""
        pred = self.predict(x)
        return (pred == torch.as_tensor(y, device=pred.device).expand_as(pred)).float().mean(-1)

    def directions(self) -> Float[Tensor, "cells d"]:
        """The probe direction per cell: the binary weight vector, or class 1 minus class 0."""
        w = self.weight
        if w.shape[-1] == 1:
            return w[..., 0]
        return w[..., 1] - w[..., 0]


def _as_cells(features: Features) -> list[Tensor]:
    cells = list(features.unbind(0)) if isinstance(features, Tensor) else list(features)
    if not cells:
        raise ProbeInputError("No feature matrices were given: pass [cells, n, d] features.")
    n = cells[0].shape[0]
    for c in cells:
        if c.ndim != 2 or c.shape[0] != n:
            raise ProbeShapeError(f"Every cell must be an [n, d] matrix with the same n; got shapes {[tuple(x.shape) for x in cells[:4]]}.")
    return cells


def _cell_targets(t: Tensor | None, cells: int, n: int, device: torch.device, dtype: torch.dtype, name: str) -> Tensor | None:
    if t is None:
        return None
    t = torch.as_tensor(t).to(device)
    t = t.to(dtype) if dtype.is_floating_point else t.long()
    if t.shape[-1] != n:
        raise ProbeShapeError(f"{name} has {t.shape[-1]} entries per cell but the features have {n} rows: pass one per example.")
    return t.expand(cells, n) if t.ndim == 1 else t


def _check_weights(weight: Tensor) -> None:
    if (weight < 0).any() or not torch.isfinite(weight).all():
        raise ProbeInputError("Sample weights must be finite and non-negative.")
    if (weight.sum(-1) <= 0).any():
        raise ProbeInputError("All sample weights are zero (in some cell): give at least one example a positive weight.")


def _moments(cells: list[Tensor], weight: Tensor, chunk_rows: int | None, device: torch.device) -> tuple[Tensor, Tensor]:
    """Weighted mean and (population) standard deviation per cell and feature."""
    total = weight.sum(-1, keepdim=True)  # [cells, 1]
    s1 = torch.zeros(len(cells), cells[0].shape[1], device=device, dtype=torch.float64)
    s2 = torch.zeros_like(s1)
    for rows, block in iter_rows(cells, chunk_rows, device):
        check_finite(block)
        w = weight[:, rows, None].double()
        s1 += (w * block.double()).sum(1)
        s2 += (w * block.double() ** 2).sum(1)
    mean = s1 / total
    std = (s2 / total - mean**2).clamp_min(0).sqrt()
    std = torch.where(std < 1e-12 * (1 + mean.abs()), torch.ones_like(std), std)  # StandardScaler: constant -> 1
    return mean.float(), std.float()


def fit_logistic(
    features: Features,
    y: Int[Tensor, "cells n"] | Int[Tensor, " n"],
    n_classes: int,
    *,
    C: float = 1.0,
    sample_weight: Float[Tensor, "cells n"] | None = None,
    standardize: bool = True,
    max_iter: int = 1000,
    tol: float = 1e-6,
    device: str | torch.device = "cpu",
    chunk_rows: int | None = None,
    dtype: torch.dtype = torch.float32,
    solver: str = "auto",
) -> LinearHeads:
    """Fit one L2-regularised logistic regression per cell, all at once (Newton or L-BFGS).

    Minimises, per cell, ``C * sum_i w_i CE(x_i W + b, y_i) + |W|^2 / 2`` (scikit-learn's
    ``LogisticRegression`` objective) on standardised ``x`` when ``standardize``.

    Args:
        features: ``[cells, n, d]``, or a list of ``[n, d]`` tensors (may be memory-mapped).
        y: class codes ``0..n_classes-1``, shared ``[n]`` or per cell ``[cells, n]``.
        n_classes: number of classes (2: one sigmoid output; more: softmax).
        C: inverse regularisation strength, as in scikit-learn.
        sample_weight: per-example weights (0 masks an example out of a cell).
        standardize: scale features to zero mean, unit variance first (per cell).
        max_iter: L-BFGS iterations at most (a joint fit of many cells needs more than one alone: 1000).
        tol: gradient tolerance.
        device: where to fit.
        chunk_rows: read the features in chunks of this many rows (bounded memory).
        dtype: precision of the fit (float32 by default; float64 for tight agreement).
        solver: ``"newton"`` (binary only: batched Newton/IRLS), ``"lbfgs"``, or ``"auto"``
            (Newton for binary probes whose Hessians fit 512 MB, else L-BFGS).

    Returns:
        :class:`LinearHeads` in the original feature space.
    """
    check_C(C)
    check_max_iter(max_iter)
    if n_classes < 2:
        raise ProbeInputError(f"A classification probe needs at least 2 classes, got n_classes={n_classes}.")
    if solver not in ("auto", "newton", "lbfgs"):
        raise ProbeInputError(f"Unknown solver {solver!r}; choose 'auto', 'newton' or 'lbfgs'.")
    if solver == "newton" and n_classes != 2:
        raise ProbeInputError("The Newton solver fits binary probes only; use solver='lbfgs' (or 'auto') for more classes.")
    device = torch.device(device)
    cells = _as_cells(features)
    n_cells, (n, d) = len(cells), cells[0].shape
    yy = _cell_targets(torch.as_tensor(y), n_cells, n, device, torch.long, "y")
    if int(yy.min()) < 0 or int(yy.max()) >= n_classes:
        raise ProbeInputError(f"Labels must be class codes 0..{n_classes - 1}; got values {int(yy.min())}..{int(yy.max())}.")
    weight = _cell_targets(sample_weight, n_cells, n, device, dtype, "sample_weight")
    weight = torch.ones(n_cells, n, device=device, dtype=dtype) if weight is None else weight
    _check_weights(weight)
    mean, std = _moments(cells, weight, chunk_rows, device) if standardize else (
        torch.zeros(n_cells, d, device=device), torch.ones(n_cells, d, device=device))
    mean, std = mean.to(dtype), std.to(dtype)
    if not standardize:
        for _, block in iter_rows(cells, chunk_rows, device):
            check_finite(block)
    k = 1 if n_classes == 2 else n_classes
    W = torch.zeros(n_cells, d, k, device=device, dtype=dtype, requires_grad=True)
    b = torch.zeros(n_cells, k, device=device, dtype=dtype, requires_grad=True)
    total = weight.sum(-1)  # [cells]
    cached = None if chunk_rows is not None else ((next(iter_rows(cells, None, device, dtype))[1] - mean[:, None]) / std[:, None])
    if k == 1 and (solver == "newton" or (solver == "auto" and newton_fits(n_cells, d))):
        def blocks():  # noqa: ANN202
            if cached is not None:
                return iter([(slice(0, n), cached)])
            return ((rows, (block - mean[:, None]) / std[:, None]) for rows, block in iter_rows(cells, chunk_rows, device, dtype))

        w_std, b_std, n_iter = newton_binary(blocks, yy, weight, C=C, max_iter=max_iter, tol=tol)
        w_orig = (w_std.to(dtype) / std)[..., None]
        b_orig = b_std.to(dtype)[:, None] - torch.einsum("cd,cdk->ck", mean, w_orig)
        return LinearHeads(w_orig, b_orig, "logistic", n_classes, n_iter)

    def chunk_loss(rows: slice, x: Tensor) -> Tensor:
        logits = torch.baddbmm(b[:, None, :], x, W)  # [cells, rows, k]
        target = yy[:, rows]
        if k == 1:
            ce = torch.nn.functional.binary_cross_entropy_with_logits(logits[..., 0], target.to(dtype), reduction="none")
        else:
            ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        return ((weight[:, rows] * ce).sum(-1) / total).sum()

    def closure() -> Tensor:
        optimiser.zero_grad()
        loss = ((W**2).sum((1, 2)) / (2 * C * total)).sum()
        loss.backward()
        value = loss.detach()
        if cached is not None:
            part = chunk_loss(slice(0, n), cached)
            part.backward()
            return value + part.detach()
        for rows, block in iter_rows(cells, chunk_rows, device, dtype):
            part = chunk_loss(rows, (block - mean[:, None]) / std[:, None])
            part.backward()
            value = value + part.detach()
        return value

    optimiser = torch.optim.LBFGS(
        [W, b], lr=1, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-12, history_size=20,
        line_search_fn="strong_wolfe",
    )
    optimiser.step(closure)
    n_iter = int(optimiser.state[optimiser.param_groups[0]["params"][0]].get("n_iter", 0))
    with torch.no_grad():
        w_orig = W / std[:, :, None]
        b_orig = b - torch.einsum("cd,cdk->ck", mean, w_orig)
    return LinearHeads(w_orig.detach(), b_orig.detach(), "logistic", n_classes, n_iter)


def fit_ridge(
    features: Features,
    y: Float[Tensor, "cells n"] | Float[Tensor, " n"],
    *,
    alpha: float = 1.0,
    sample_weight: Float[Tensor, "cells n"] | None = None,
    device: str | torch.device = "cpu",
    chunk_rows: int | None = None,
) -> LinearHeads:
    """Closed-form ridge regression per cell: ``min |y - xW - b|^2 + alpha |W|^2`` (scikit-learn's ``Ridge``)."""
    try:
        ok = not isinstance(alpha, bool) and math.isfinite(float(alpha)) and float(alpha) >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ProbeInputError(f"alpha must be a finite number >= 0 (the L2 strength), got alpha={alpha!r}. Pass e.g. alpha=1.0.")
    device = torch.device(device)
    cells = _as_cells(features)
    n_cells, (n, d) = len(cells), cells[0].shape
    yy = _cell_targets(torch.as_tensor(y), n_cells, n, device, torch.float64, "y")
    check_finite(yy, "regression targets")
    weight = _cell_targets(sample_weight, n_cells, n, device, torch.float64, "sample_weight")
    weight = torch.ones(n_cells, n, device=device, dtype=torch.float64) if weight is None else weight
    _check_weights(weight)
    sw = weight.sum(-1)  # [cells]
    sx = torch.zeros(n_cells, d, device=device, dtype=torch.float64)
    sxx = torch.zeros(n_cells, d, d, device=device, dtype=torch.float64)
    sxy = torch.zeros(n_cells, d, device=device, dtype=torch.float64)
    sy = (weight * yy).sum(-1)
    for rows, block in iter_rows(cells, chunk_rows, device, torch.float64):
        check_finite(block)
        w = weight[:, rows, None]
        sx += (w * block).sum(1)
        sxx += torch.einsum("cnd,cne->cde", w * block, block)
        sxy += (w * block * yy[:, rows, None]).sum(1)
    mx, my = sx / sw[:, None], sy / sw
    cxx = sxx - sw[:, None, None] * mx[:, :, None] * mx[:, None, :]
    cxy = sxy - sw[:, None] * mx * my[:, None]
    eye = torch.eye(d, device=device, dtype=torch.float64)
    coef = torch.linalg.solve(cxx + alpha * eye, cxy.unsqueeze(-1))  # [cells, d, 1]
    bias = my[:, None] - torch.einsum("cd,cdk->ck", mx, coef)
    return LinearHeads(coef.float(), bias.float(), "ridge", 0)


def fit_mass_mean(
    features: Features,
    y: Int[Tensor, "cells n"] | Int[Tensor, " n"],
    n_classes: int,
    *,
    sample_weight: Float[Tensor, "cells n"] | None = None,
    device: str | torch.device = "cpu",
    chunk_rows: int | None = None,
) -> LinearHeads:
    """Class means per cell; scores ``mu_k . x - |mu_k|^2 / 2`` (nearest class mean)."""
    if n_classes < 2:
        raise ProbeInputError(f"A classification probe needs at least 2 classes, got n_classes={n_classes}.")
    device = torch.device(device)
    cells = _as_cells(features)
    n_cells, (n, d) = len(cells), cells[0].shape
    yy = _cell_targets(torch.as_tensor(y), n_cells, n, device, torch.long, "y")
    weight = _cell_targets(sample_weight, n_cells, n, device, torch.float64, "sample_weight")
    weight = torch.ones(n_cells, n, device=device, dtype=torch.float64) if weight is None else weight
    _check_weights(weight)
    sums = torch.zeros(n_cells, n_classes, d, device=device, dtype=torch.float64)
    counts = torch.zeros(n_cells, n_classes, device=device, dtype=torch.float64)
    for rows, block in iter_rows(cells, chunk_rows, device, torch.float64):
        check_finite(block)
        onehot = torch.nn.functional.one_hot(yy[:, rows], n_classes).double() * weight[:, rows, None]  # [cells, rows, K]
        sums += torch.einsum("cnk,cnd->ckd", onehot, block)
        counts += onehot.sum(1)
    if (counts == 0).any():
        raise ProbeInputError("A class has no training examples in some cell: every class needs at least one example.")
    means = sums / counts[..., None]  # [cells, K, d]
    return LinearHeads(means.transpose(1, 2).float(), (-(means**2).sum(-1) / 2).float(), "mass-mean", n_classes)
