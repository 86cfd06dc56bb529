"""Batched Newton (IRLS) for binary logistic probes: a handful of exact second-order steps.

L-BFGS needs hundreds of small sequential steps to fit many probes jointly; each is latency
bound on a GPU and Python-bound on a CPU. For a binary probe the Hessian of scikit-learn's
objective ``C * sum_i w_i CE(x_i w + b, y_i) + |w|^2 / 2`` is only ``(d + 1) x (d + 1)`` per
cell::

    H = C * X~^T diag(w * p * (1 - p)) X~ + diag(1, ..., 1, 0)     (X~ = [X, 1])

so every cell takes full Newton steps at once (one batched matmul for ``X^T D X`` and one
batched Cholesky solve), with a per-cell backtracking line search. The objective is strictly
convex, so the minimiser is the one L-BFGS and scikit-learn find; Newton converges
quadratically and stops after ~10 steps. This is scikit-learn's ``newton-cholesky`` solver,
batched over cells. Multi-class probes keep L-BFGS (the Hessian grows as ``(K d)^2``).

Example:
    >>> X = torch.randn(2, 300, 8)
    >>> y = (X[..., 0] > 0).long()
    >>> W, b, steps = newton_binary([X[0], X[1]], y, torch.ones(2, 300), C=1.0)
    >>> W.shape, b.shape
    (torch.Size([2, 8]), torch.Size([2]))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

__all__ = ["newton_binary", "newton_fits"]

#: Hessians (``cells * (d + 1)^2`` float64 numbers) above this many bytes use L-BFGS instead.
HESSIAN_BUDGET_BYTES = 512 * 2**20


def newton_fits(n_cells: int, d: int) -> bool:
    """Whether the batched Hessians of ``n_cells`` binary probes on ``d`` features fit the budget."""
    return n_cells * (d + 1) ** 2 * 8 <= HESSIAN_BUDGET_BYTES


def newton_binary(
    blocks: Callable[[], Iterator[tuple[slice, Tensor]]] | list[Tensor],
    y: Tensor,
    weight: Tensor,
    *,
    C: float,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> tuple[Tensor, Tensor, int]:
    """Minimise each cell's L2 logistic objective by Newton's method.

    Args:
        blocks: a function returning an iterator of ``(rows, x)`` with ``x`` the
            (standardised) features ``[cells, rows, d]`` of those rows; or the cells themselves
            (a list of ``[n, d]`` tensors, read in one block).
        y: binary labels ``[cells, n]`` (0/1).
        weight: sample weights ``[cells, n]`` (0 drops an example from a cell).
        C: inverse regularisation strength.
        max_iter: Newton steps at most.
        tol: stop when every cell's gradient, divided by its total weight, is below ``tol``
            in max-norm (the criterion the L-BFGS path uses).

    Returns:
        ``(W [cells, d], b [cells], steps)`` in float64.
    """
    if isinstance(blocks, list):
        stacked = torch.stack(blocks)
        blocks = lambda: iter([(slice(0, stacked.shape[1]), stacked)])  # noqa: E731
    first = next(blocks())[1]
    n_cells, d, device = first.shape[0], first.shape[2], first.device
    y = y.to(device, torch.float64)
    weight = weight.to(device, torch.float64)
    total = weight.sum(-1)  # [cells]
    W = torch.zeros(n_cells, d, device=device, dtype=torch.float64)
    b = torch.zeros(n_cells, device=device, dtype=torch.float64)
    reg = torch.ones(d + 1, device=device, dtype=torch.float64)
    reg[-1] = 0.0  # the intercept is not penalised
    steps = 0
    loss, grad, hess = _loss_grad_hess(blocks, y, weight, W, b, C, want_hess=True)
    done = grad.abs().amax(-1) / total < tol
    for steps in range(1, max_iter + 1):  # noqa: B007
        hess = hess + torch.diag_embed(reg).expand_as(hess)
        direction = _solve(hess, grad)  # [cells, d + 1]
        W, b, loss, moved = _line_search(blocks, y, weight, W, b, C, loss, grad, direction, done)
        if not moved:  # at the minimum to machine precision
            break
        loss, grad, hess = _loss_grad_hess(blocks, y, weight, W, b, C, want_hess=True)
        done = grad.abs().amax(-1) / total < tol
        if bool(done.all()):
            break
    return W, b, steps


def _loss_grad_hess(blocks, y, weight, W, b, C, want_hess):  # noqa: ANN001, ANN202
    """Objective, gradient ``[cells, d+1]`` and data Hessian ``[cells, d+1, d+1]`` (no penalty in H)."""
    n_cells, d = W.shape
    loss = (W**2).sum(-1) / 2
    grad = torch.cat([W, torch.zeros(n_cells, 1, dtype=W.dtype, device=W.device)], -1)
    hess = torch.zeros(n_cells, d + 1, d + 1, dtype=torch.float64, device=W.device) if want_hess else None
    for rows, x in blocks():
        x64 = x.double()  # objective and gradient in float64; the Hessian in the features' precision
        z = torch.baddbmm(b[:, None, None], x64, W[..., None])[..., 0]  # [cells, rows]
        p = torch.sigmoid(z)
        w, t = weight[:, rows], y[:, rows]
        loss = loss + C * (w * torch.nn.functional.binary_cross_entropy_with_logits(z, t, reduction="none")).sum(-1)
        r = C * w * (p - t)
        grad[:, :d] += torch.bmm(r[:, None, :], x64)[:, 0]
        grad[:, d] += r.sum(-1)
        if want_hess:
            s = C * w * p * (1 - p)  # [cells, rows]
            xs = x * s[..., None].to(x.dtype)
            hess[:, :d, :d] += torch.bmm(xs.transpose(1, 2), x).double()
            col = torch.bmm(s[:, None, :], x64)[:, 0]
            hess[:, :d, d] += col
            hess[:, d, :d] += col
            hess[:, d, d] += s.sum(-1)
    return loss, grad, hess


def _solve(hess: Tensor, grad: Tensor) -> Tensor:
    """Newton directions ``H^{-1} g`` per cell (Cholesky; a jittered retry where it fails)."""
    factor, info = torch.linalg.cholesky_ex(hess)
    if bool((info != 0).any()):
        jitter = 1e-8 * hess.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp_min(1.0)
        factor, _ = torch.linalg.cholesky_ex(hess + jitter[:, None, None] * torch.eye(hess.shape[-1], dtype=hess.dtype, device=hess.device))
    return torch.cholesky_solve(grad[..., None], factor)[..., 0]


def _line_search(blocks, y, weight, W, b, C, loss, grad, direction, done, max_halvings: int = 30):  # noqa: ANN001, ANN202
    """Per-cell backtracking (Armijo) along ``-direction``; cells that cannot decrease keep their values.

    Cells already ``done`` (converged) do not move.

    Returns the new ``W``, ``b``, objective, and whether any cell moved.
    """
    d = W.shape[1]
    t = torch.ones_like(loss)
    slope = (grad * direction).sum(-1)  # > 0: the decrease rate along -direction
    accepted = done.clone()
    new_W, new_b, new_loss = W.clone(), b.clone(), loss.clone()
    for _ in range(max_halvings):
        cand_W = W - t[:, None] * direction[:, :d]
        cand_b = b - t * direction[:, d]
        cand_loss = _loss_grad_hess(blocks, y, weight, cand_W, cand_b, C, want_hess=False)[0]
        ok = ~accepted & (cand_loss <= loss - 1e-4 * t * slope)
        new_W[ok], new_b[ok], new_loss[ok] = cand_W[ok], cand_b[ok], cand_loss[ok]
        accepted |= ok
        if bool(accepted.all()):
            break
        t = torch.where(accepted, t, t / 2)
    return new_W, new_b, new_loss, bool((accepted & ~done).any())
