"""Integrated gradients at the token-embedding layer (Sundararajan et al., 2017).

With ``x`` the token embeddings (the output of ``hook_embed``), ``x'`` a baseline and
``F`` the target, the attribution of token ``i`` is

    IG_i = Σ_d (x_{i,d} - x'_{i,d}) · ∫_0^1 ∂F/∂x_{i,d}(x' + α (x - x')) dα,

and completeness says ``Σ_i IG_i = F(x) - F(x')``. The integral is a quadrature
``Σ_k w_k ∂F(x' + α_k (x - x'))``: Gauss–Legendre (exact for polynomials of degree
``2n - 1``; the default, as in captum) or a Riemann rule (left / right / middle /
trapezoid). The ``n_steps`` interpolated inputs run in
chunks of ``internal_batch_size`` so memory stays bounded, and the convergence delta
``Σ_i IG_i - (F(x) - F(x'))`` is always reported.

Baselines: ``"zero"`` (zero embeddings), a token (``"pad"``, ``"unk"``, ``"mask"``,
``"eos"``, or an id: every prompt position gets that token's embedding), a user tensor
``[pos, d_model]`` / ``[d_model]``, or the token ids ``[pos]`` of a counterfactual prompt of
the same length (a minimal pair: IG then explains ``F(x) - F(x_counterfactual)`` and is
nonzero only where the prompts differ). BOS keeps its own embedding unless ``keep_bos=False``,
and forced continuation tokens (generation attribution) are never interpolated.

The two ends ``F(x)`` and ``F(x')`` run as two extra rows of the last chunk, so the
delta costs no forward pass of its own (the last chunk holds up to
``internal_batch_size + 2`` rows). Leading positions where ``x = x'`` (BOS, kept) are the
same in every row: where the model allows, they run once and enter the batch as a frozen
key-value cache (see ``shared_prefix`` in :func:`~mechinterp.attribution.forward.forward_scores`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.attribution.adaptive import adaptive_gauss_legendre
from mechinterp.attribution.base import AbstractAttributionMethod, Prepared, prepare, register_method
from mechinterp.attribution.forward import special_token_id, target_gradients, token_embeddings
from mechinterp.attribution.result import TokenAttribution
from mechinterp.errors import MechinterpError, ShapeMismatchError

__all__ = ["IntegratedGradients", "quadrature", "baseline_embeddings", "RULES"]

RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "adaptive")


def quadrature(n_steps: int, rule: str = "gausslegendre") -> tuple[Float[Tensor, " n_steps"], Float[Tensor, " n_steps"]]:
    """Nodes ``α_k`` in [0, 1] and weights ``w_k`` (summing to 1) of a quadrature rule.

    Gauss–Legendre and the left / right / middle Riemann rules use captum's nodes and
    weights, so results compare directly. The trapezoid rule here has weights ``1/(n-1)``
    (halved at the ends), summing to 1; captum's ``riemann_trapezoid`` uses ``1/n`` (halved
    at the ends), which sums to ``(n-1)/n`` and under-counts the integral by ``1/n``.

    Example:
        >>> alphas, weights = quadrature(2, "gausslegendre")
        >>> [round(float(a), 4) for a in alphas]
        [0.2113, 0.7887]
    """
    if rule == "adaptive":
        raise MechinterpError("The adaptive rule has no fixed nodes; IntegratedGradients(rule='adaptive') runs it.")
    if n_steps < 1 or (rule == "riemann_trapezoid" and n_steps < 2):
        raise MechinterpError(f"n_steps must be at least {2 if rule == 'riemann_trapezoid' else 1} for {rule} (got {n_steps}).")
    n = n_steps
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        alphas, steps = 0.5 * (nodes + 1), 0.5 * weights
    elif rule == "riemann_left":
        alphas, steps = np.linspace(0, 1 - 1 / n, n), np.full(n, 1 / n)
    elif rule == "riemann_right":
        alphas, steps = np.linspace(1 / n, 1, n), np.full(n, 1 / n)
    elif rule == "riemann_middle":
        alphas, steps = np.linspace(1 / (2 * n), 1 - 1 / (2 * n), n), np.full(n, 1 / n)
    elif rule == "riemann_trapezoid":
        alphas = np.linspace(0, 1, n)
        steps = np.array([1 / (2 * (n - 1))] + [1 / (n - 1)] * (n - 2) + [1 / (2 * (n - 1))])
    else:
        raise MechinterpError(f"Unknown integration rule {rule!r}; use one of {RULES}.")
    return torch.tensor(alphas, dtype=torch.float64), torch.tensor(steps, dtype=torch.float64)


def baseline_embeddings(model: Any, prep: Prepared, baseline: str | int | Tensor, keep_bos: bool = True
                        ) -> Float[Tensor, "1 pos d_model"]:
    """The baseline token embeddings for ``prep`` (continuation positions keep their own)."""
    x = token_embeddings(model, prep.batch_tokens).detach()
    if isinstance(baseline, Tensor) and not baseline.is_floating_point():  # a counterfactual prompt's token ids
        ids = baseline.flatten().long()
        if len(ids) < prep.n_prompt:
            raise ShapeMismatchError(f"A token-id baseline needs at least {prep.n_prompt} ids (one per prompt position, "
                                     f"BOS included), got {len(ids)}.")
        base = token_embeddings(model, ids[: prep.n_prompt].unsqueeze(0)).detach()
    elif isinstance(baseline, Tensor):
        base = baseline.to(x.device, x.dtype)
        if base.ndim == 1:
            base = base.expand(x.shape[1], -1)
        if base.shape[-2:] != (prep.n_prompt, x.shape[-1]) and base.shape[-2:] != x.shape[-2:]:
            raise ShapeMismatchError(f"A baseline tensor must be [d_model] or [{prep.n_prompt}, {x.shape[-1]}], "
                                     f"got {tuple(baseline.shape)}.")
        base = base.reshape(-1, x.shape[-1])[: prep.n_prompt].unsqueeze(0)
    elif baseline == "zero":
        base = torch.zeros_like(x[:, : prep.n_prompt])
    else:
        idx = special_token_id(model, baseline)
        base = token_embeddings(model, torch.full((1, prep.n_prompt), idx, dtype=torch.long)).detach()
    out = x.clone()
    out[:, : prep.n_prompt] = base
    if keep_bos and prep.has_bos:
        out[:, 0] = x[:, 0]
    return out


def shared_prefix_length(diff: Float[Tensor, "1 pos d_model"]) -> int:
    """How many leading positions have ``x = x'`` exactly (they are the same in every path row)."""
    moving = diff[0].ne(0).any(-1).nonzero()
    return int(moving[0, 0]) if len(moving) else diff.shape[1]


@register_method("integrated_gradients", "ig")
class IntegratedGradients(AbstractAttributionMethod):
    """Integrated gradients at the embedding layer, with the convergence delta.

    Args:
        baseline: ``"zero"``, ``"pad"``, ``"unk"``, ``"mask"``, ``"eos"``, a token id, a float
            tensor ``[pos, d_model]`` / ``[d_model]``, or an integer tensor ``[pos]``: the token
            ids of a counterfactual prompt of the same length.
        n_steps: quadrature points.
        rule: ``"gausslegendre"``, ``"riemann_left|right|middle|trapezoid"``, or ``"adaptive"``
            (composite Gauss–Legendre that bisects the panels where completeness fails, with
            ``n_steps`` as the budget of gradient rows; see :mod:`~mechinterp.attribution.adaptive`).
        internal_batch_size: interpolated inputs per forward pass (bounds memory).
        keep_bos: BOS keeps its embedding in the baseline (it gets zero attribution).
        tolerance: ``rule="adaptive"`` stops once ``|delta| <= tolerance · |F(x) - F(x')|``.

    Example:
        >>> res = attribute(model, "w1 w2 w3", "w4", method="ig", n_steps=64)  # doctest: +SKIP
        >>> res.metadata["convergence_delta"]  # doctest: +SKIP
    """

    uses_gradients = True

    def __init__(self, baseline: str | int | Tensor = "zero", n_steps: int = 64, rule: str = "gausslegendre",
                 internal_batch_size: int = 32, keep_bos: bool = True, tolerance: float = 0.01) -> None:
        self.baseline = baseline
        self.n_steps = n_steps
        self.rule = rule
        self.internal_batch_size = internal_batch_size
        self.keep_bos = keep_bos
        self.tolerance = tolerance

    def attribute(self, model: Any, prompt: str | Tensor, target: Any) -> TokenAttribution:
        if self.internal_batch_size < 1:
            raise MechinterpError(f"internal_batch_size must be >= 1 (got {self.internal_batch_size}).")
        prep = prepare(model, prompt, target)
        x = token_embeddings(model, prep.batch_tokens).detach()  # [1, pos, d_model]
        base = baseline_embeddings(model, prep, self.baseline, self.keep_bos)
        diff = x - base
        shared = shared_prefix_length(diff)  # BOS kept: 1
        if self.rule == "adaptive":
            return self._adaptive(model, prep, base, diff, shared)
        alphas, weights = quadrature(self.n_steps, self.rule)
        dtype = x.dtype
        total = torch.zeros((prep.target.n_targets, *x.shape[1:]), dtype=dtype, device=x.device)
        starts = list(range(0, self.n_steps, self.internal_batch_size))
        for start in starts:
            a = alphas[start : start + self.internal_batch_size].to(x.device, dtype)
            w = weights[start : start + self.internal_batch_size].to(x.device, dtype)
            path = base + a.view(-1, 1, 1) * diff  # [chunk, pos, d_model]
            last = start == starts[-1]
            if last:  # F(x) and F(x') ride along in the last chunk (rows -2, -1): no extra forward pass
                path = torch.cat([path, x, base])
            tokens = prep.batch_tokens.expand(len(path), -1)
            values, grads = target_gradients(model, tokens, prep.target, path, shared_prefix=shared)  # [n_targets, chunk, pos, d_model]
            total += torch.einsum("tcpd,c->tpd", grads[:, : len(a)], w)
            if last:
                ends = values[-2:]  # [2, n_targets]
        scores = (total * diff[0]).sum(-1)[:, : prep.n_prompt]  # [n_targets, n_prompt]
        return self._finish(prep, scores, ends, {"n_forward": self.n_steps + 2})

    def _adaptive(self, model: Any, prep: Prepared, base: Tensor, diff: Tensor, shared: int) -> TokenAttribution:
        if self.n_steps < 8:
            raise MechinterpError(f"rule='adaptive' needs n_steps >= 8 (the budget of gradient rows; got {self.n_steps}).")

        def integrand(alphas: Tensor) -> tuple[Tensor, Tensor]:
            values, terms = [], []
            for chunk in alphas.split(self.internal_batch_size):
                path = base + chunk.to(base.device, base.dtype).view(-1, 1, 1) * diff  # [chunk, pos, d_model]
                vals, grads = target_gradients(model, prep.batch_tokens.expand(len(chunk), -1), prep.target, path,
                                               shared_prefix=shared)
                values.append(vals.double().cpu())
                terms.append((grads * diff).sum(-1).double().cpu())  # [n_targets, chunk, pos]
            return torch.cat(values), torch.cat(terms, dim=1)

        res = adaptive_gauss_legendre(integrand, self.n_steps, self.tolerance)
        extra = {"n_forward": res.evaluations, "n_gradient_rows": res.rows, "panel_edges": res.edges, "rounds": res.rounds}
        return self._finish(prep, res.integral[:, : prep.n_prompt], res.end_values, extra)

    def _finish(self, prep: Prepared, scores: Tensor, ends: Tensor, extra: dict[str, Any]) -> TokenAttribution:
        gap = (ends[0] - ends[1]).double().cpu()
        delta = scores.double().sum(-1).cpu() - gap
        meta = {
            "convergence_delta": delta.tolist(),
            "relative_delta": (delta.abs() / gap.abs().clamp_min(1e-12)).tolist(),
            "target_values": ends[0].tolist(),
            "baseline_values": ends[1].tolist(),
            **extra,  # n_forward: rows of forward passes (the path plus both ends)
        }
        return self._result(prep, scores, meta)
