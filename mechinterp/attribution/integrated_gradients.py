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

Baselines: ``"mean"`` (the default: the mean token embedding), ``"zero"`` (zero embeddings,
captum's default), a token (``"pad"``, ``"unk"``, ``"mask"``, ``"eos"``, or an id: every
prompt position gets that token's embedding), a user tensor ``[pos, d_model]`` /
``[d_model]``, or the token ids ``[pos]`` of a counterfactual prompt of the same length (a
minimal pair: IG then explains ``F(x) - F(x_counterfactual)`` and is nonzero only where the
prompts differ). BOS keeps its own embedding unless ``keep_bos=False``; without BOS the first
prompt token keeps its own unless ``keep_first_token=False``; forced continuation tokens
(generation attribution) are never interpolated.

Well posed on real models. On SmolLM2-135M (RMSNorm, no BOS; contrast target, fact prompts,
32 Gauss–Legendre steps) moving position 0, the attention sink, leaves a completeness gap of
45% (zero baseline; 165% at worst) to 111% (mean embedding) of ``F(x) - F(x')`` that does not
shrink with steps; with it kept the zero baseline gives 4.2% (median; 15% at worst) and the
mean embedding 2.1% (5.2%), which also ranks the subject first most often among task-agnostic
baselines (7 of 10 prompts; zero 5). Hence the defaults ``baseline="mean"``,
``keep_first_token=None``; ``baseline="zero", keep_first_token=False`` is captum's IG. A gap
over ``warn_delta`` warns :class:`CompletenessWarning`; :func:`~mechinterp.attribution.ig_convergence.ig_convergence`
checks whether it shrinks with steps.

The two ends ``F(x)`` and ``F(x')`` run as two extra rows of the last chunk, so the
delta costs no forward pass of its own (the last chunk holds up to
``internal_batch_size + 2`` rows). Leading positions where ``x = x'`` (BOS, kept) are the
same in every row: where the model allows, they run once and enter the batch as a frozen
key-value cache (see ``shared_prefix`` in :func:`~mechinterp.attribution.forward.forward_scores`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.validation import check_count, check_finite, check_positive
from mechinterp.attribution.adaptive import adaptive_gauss_legendre
from mechinterp.attribution.base import AbstractAttributionMethod, Prepared, prepare_prompt, register_method
from mechinterp.attribution.forward import resolve_absence, special_token_id, target_gradients, token_embeddings
from mechinterp.attribution.grouping import AttributionWarning
from mechinterp.attribution.result import TokenAttribution
from mechinterp.errors import MechinterpError, ShapeMismatchError

__all__ = ["IntegratedGradients", "CompletenessWarning", "quadrature", "baseline_embeddings", "keeps_first_token",
           "accumulation_dtype", "RULES"]

RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "adaptive")


class CompletenessWarning(AttributionWarning):
    """IG's completeness gap ``|Σ_i IG_i - (F(x) - F(x'))|`` is a large share of ``F(x) - F(x')``."""


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype IG builds its path and sums its quadrature in: float64 for float64 models, else float32.

    A bf16/fp16 model still runs each forward and backward pass in its own dtype; the path
    points are rounded to it, and the weighted sum of gradients, ``x - x'`` and the scores
    stay in float32, so completeness is not lost to the rounding of the sum (bf16 has 8
    significant bits: summing 64 weighted gradients in it loses several percent).
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


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


def baseline_embeddings(model: Any, prep: Prepared, baseline: str | int | Tensor, keep_bos: bool = True,
                        keep_first_token: bool | None = None) -> Float[Tensor, "1 pos d_model"]:
    """The baseline token embeddings for ``prep`` (continuation positions keep their own).

    Position 0 keeps its own embedding when it is a prepended BOS (``keep_bos``), or, with
    ``keep_first_token`` (``None``: when the prompt has no BOS), whatever token it is: see
    :func:`keeps_first_token`.
    """
    x = token_embeddings(model, prep.batch_tokens).detach()
    baseline = resolve_absence(model, baseline)
    if isinstance(baseline, Tensor) and not baseline.is_floating_point():  # a counterfactual prompt's token ids
        if baseline.ndim != 1:
            raise MechinterpError(f"An integer baseline tensor is read as token ids, but this one has shape "
                                  f"{tuple(baseline.shape)}: pass a float tensor ([d_model] or [pos, d_model]) for "
                                  f"embeddings, or a 1-D tensor of {prep.n_prompt} token ids for a counterfactual prompt.")
        ids = baseline.long()
        if len(ids) != prep.n_prompt:
            raise ShapeMismatchError(f"A token-id baseline has {len(ids)} ids for a prompt of {prep.n_prompt} tokens "
                                     f"(BOS included): the lengths must match, one id per prompt position.")
        base = token_embeddings(model, ids.unsqueeze(0)).detach()
    elif isinstance(baseline, Tensor):
        check_finite(baseline, "baseline", hint="IG integrates from the baseline to the input, so every entry of a "
                     "baseline embedding must be a finite number (or use baseline='auto' / 'mean' / 'pad').")
        base = baseline.to(x.device, x.dtype)
        if base.ndim == 1:
            base = base.expand(x.shape[1], -1)
        if base.shape[-2:] != (prep.n_prompt, x.shape[-1]) and base.shape[-2:] != x.shape[-2:]:
            raise ShapeMismatchError(f"A baseline tensor must be [d_model] or [{prep.n_prompt}, {x.shape[-1]}], "
                                     f"got {tuple(baseline.shape)}.")
        base = base.reshape(-1, x.shape[-1])[: prep.n_prompt].unsqueeze(0)
    elif isinstance(baseline, str) and baseline == "zero":
        base = torch.zeros_like(x[:, : prep.n_prompt])
    elif isinstance(baseline, str) and baseline == "mean":
        base = model.W_E.detach().mean(0, dtype=torch.float32).to(x.dtype).expand(1, prep.n_prompt, -1)
    else:
        idx = special_token_id(model, baseline)
        base = token_embeddings(model, torch.full((1, prep.n_prompt), idx, dtype=torch.long)).detach()
    out = x.clone()
    out[:, : prep.n_prompt] = base
    if keeps_first_token(prep, keep_bos, keep_first_token):
        out[:, 0] = x[:, 0]
    return out


def keeps_first_token(prep: Prepared, keep_bos: bool = True, keep_first_token: bool | None = None) -> bool:
    """Whether position 0 keeps its own embedding on the path (and so gets zero attribution).

    A prepended BOS is kept when ``keep_bos``. Without BOS, the first prompt token is where a
    real model parks most of its attention (the attention sink) and builds outsized residual
    activations; moving it along the path makes the integral ill-posed (on SmolLM2-135M the
    completeness gap is several times ``F(x) - F(x')`` whatever the baseline and step count),
    so ``keep_first_token=None`` keeps it whenever the prompt has no BOS.
    """
    if prep.has_bos:
        return keep_bos
    return True if keep_first_token is None else bool(keep_first_token)


def shared_prefix_length(diff: Float[Tensor, "1 pos d_model"]) -> int:
    """How many leading positions have ``x = x'`` exactly (they are the same in every path row)."""
    moving = diff[0].ne(0).any(-1).nonzero()
    return int(moving[0, 0]) if len(moving) else diff.shape[1]


@register_method("integrated_gradients", "ig")
class IntegratedGradients(AbstractAttributionMethod):
    """Integrated gradients at the embedding layer, with the convergence delta.

    Args:
        baseline: ``"auto"`` (default: the model's own "missing word" where it declares one, e.g.
            ``"pad"`` for ``zoo:toy-lm``, else ``"mean"``), ``"mean"`` (the mean token embedding at every
            moving position), ``"zero"``
            (captum's default; ill-posed on normalised models, see the module notes), ``"pad"``,
            ``"unk"``, ``"mask"``, ``"eos"``, a token id, a float tensor ``[pos, d_model]`` / ``[d_model]``, or an
            integer tensor ``[pos]``: the token ids of a counterfactual prompt of the same length.
        n_steps: quadrature points.
        rule: ``"gausslegendre"``, ``"riemann_left|right|middle|trapezoid"``, or ``"adaptive"``
            (composite Gauss–Legendre that bisects the panels where completeness fails, with
            ``n_steps`` as the budget of gradient rows; see :mod:`~mechinterp.attribution.adaptive`).
        internal_batch_size: interpolated inputs per forward pass (bounds memory).
        keep_bos: BOS keeps its embedding in the baseline (it gets zero attribution).
        keep_first_token: position 0 keeps its embedding when the prompt has no BOS (it gets zero
            attribution). ``None`` (default): keep it whenever there is no BOS, because there it is
            the attention sink of a real model and moving it makes the integral ill-posed;
            ``False`` interpolates it as captum does.
        tolerance: ``rule="adaptive"`` stops once ``|delta| <= tolerance · |F(x) - F(x')|``.
        warn_delta: warn :class:`CompletenessWarning` (with the measured gap, the likely cause and
            what to do) when ``|delta| > warn_delta · |F(x) - F(x')|``; ``None`` never warns.

    Precision: each forward and backward pass runs in the model's dtype; the path, ``x - x'``,
    the quadrature sum and the scores are float32 (float64 for a float64 model), see
    :func:`accumulation_dtype`.

    Example:
        >>> res = attribute(model, "w1 w2 w3", "w4", method="ig", n_steps=64)  # doctest: +SKIP
        >>> res.metadata["convergence_delta"]  # doctest: +SKIP
    """

    uses_gradients = True

    counts = ("internal_batch_size",)
    positive = ("tolerance",)

    def __init__(self, baseline: str | int | Tensor = "auto", n_steps: int = 64, rule: str = "gausslegendre",
                 internal_batch_size: int = 32, keep_bos: bool = True, keep_first_token: bool | None = None,
                 tolerance: float = 0.01, warn_delta: float | None = 0.05) -> None:
        self.baseline = baseline
        self.n_steps = n_steps
        self.rule = rule
        self.internal_batch_size = internal_batch_size
        self.keep_bos = keep_bos
        self.keep_first_token = keep_first_token
        self.tolerance = tolerance
        self.warn_delta = warn_delta

    def attribute(self, model: Any, prompt: str | Tensor, target: Any) -> TokenAttribution:
        check_count(self.internal_batch_size, "internal_batch_size")
        check_count(self.n_steps, "n_steps", none_ok=self.rule == "adaptive")
        check_positive(self.tolerance, "tolerance")
        prep = prepare_prompt(model, prompt, target)
        x = token_embeddings(model, prep.batch_tokens).detach()  # [1, pos, d_model]
        base = baseline_embeddings(model, prep, self.baseline, self.keep_bos, self.keep_first_token)
        acc = accumulation_dtype(x.dtype)
        diff = x.to(acc) - base.to(acc)  # [1, pos, d_model], in the accumulation precision
        shared = shared_prefix_length(diff)  # first position kept: 1
        if self.rule == "adaptive":
            return self._adaptive(model, prep, base, diff, shared)
        alphas, weights = quadrature(self.n_steps, self.rule)
        total = torch.zeros((prep.target.n_targets, *x.shape[1:]), dtype=acc, device=x.device)
        starts = list(range(0, self.n_steps, self.internal_batch_size))
        for start in starts:
            a = alphas[start : start + self.internal_batch_size].to(x.device, acc)
            w = weights[start : start + self.internal_batch_size].to(x.device, acc)
            path = (base.to(acc) + a.view(-1, 1, 1) * diff).to(x.dtype)  # [chunk, pos, d_model], the model's dtype
            last = start == starts[-1]
            if last:  # F(x) and F(x') ride along in the last chunk (rows -2, -1): no extra forward pass
                path = torch.cat([path, x, base])
            tokens = prep.batch_tokens.expand(len(path), -1)
            values, grads = target_gradients(model, tokens, prep.target, path, shared_prefix=shared)  # [n_targets, chunk, pos, d_model]
            total += torch.einsum("tcpd,c->tpd", grads[:, : len(a)].to(acc), w)
            if last:
                ends = values[-2:]  # [2, n_targets]
        scores = (total * diff[0]).sum(-1)[:, : prep.n_prompt]  # [n_targets, n_prompt]
        return self._finish(model, prep, scores, ends, {"n_forward": self.n_steps + 2})

    def _adaptive(self, model: Any, prep: Prepared, base: Tensor, diff: Tensor, shared: int) -> TokenAttribution:
        if self.n_steps < 8:
            raise MechinterpError(f"rule='adaptive' needs n_steps >= 8 (the budget of gradient rows; got {self.n_steps}).")

        def integrand(alphas: Tensor) -> tuple[Tensor, Tensor]:
            values, terms = [], []
            for chunk in alphas.split(self.internal_batch_size):
                path = (base.to(diff.dtype) + chunk.to(base.device, diff.dtype).view(-1, 1, 1) * diff).to(base.dtype)  # [chunk, pos, d_model]
                vals, grads = target_gradients(model, prep.batch_tokens.expand(len(chunk), -1), prep.target, path,
                                               shared_prefix=shared)
                values.append(vals.double().cpu())
                terms.append((grads.to(diff.dtype) * diff).sum(-1).double().cpu())  # [n_targets, chunk, pos]
            return torch.cat(values), torch.cat(terms, dim=1)

        res = adaptive_gauss_legendre(integrand, self.n_steps, self.tolerance)
        extra = {"n_forward": res.evaluations, "n_gradient_rows": res.rows, "panel_edges": res.edges, "rounds": res.rounds}
        return self._finish(model, prep, res.integral[:, : prep.n_prompt], res.end_values, extra)

    def _finish(self, model: Any, prep: Prepared, scores: Tensor, ends: Tensor, extra: dict[str, Any]) -> TokenAttribution:
        gap = (ends[0] - ends[1]).double().cpu()
        delta = scores.double().sum(-1).cpu() - gap
        relative = delta.abs() / gap.abs().clamp_min(1e-12)
        meta = {
            "convergence_delta": delta.tolist(),
            "relative_delta": relative.tolist(),
            "target_values": ends[0].tolist(),
            "baseline_values": ends[1].tolist(),
            "first_token_kept": keeps_first_token(prep, self.keep_bos, self.keep_first_token),
            "accumulation_dtype": str(accumulation_dtype(model.embed.W_E.dtype)).replace("torch.", ""),
            **extra,  # n_forward: rows of forward passes (the path plus both ends)
        }
        if self.warn_delta is not None and float(relative.max()) > self.warn_delta:
            warn_incomplete(model, prep, self, delta, gap)
        return self._result(prep, scores, meta)


def warn_incomplete(model: Any, prep: Prepared, method: IntegratedGradients, delta: Tensor, gap: Tensor) -> None:
    """Warn :class:`CompletenessWarning` with the measured gap and the likely cause, and what to do."""
    t = int((delta.abs() / gap.abs().clamp_min(1e-12)).argmax())
    rel = float(delta[t].abs() / gap[t].abs().clamp_min(1e-12))
    where = f"at n_steps={method.n_steps} ({method.rule}, baseline={_describe(method.baseline)})"
    msg = (f"Integrated gradients misses completeness by {rel:.1%} of F(x) - F(x') (delta {float(delta[t]):+.4g} on a gap of "
           f"{float(gap[t]):.4g}) {where}: the scores do not add up to what they explain.")
    causes = []
    if not keeps_first_token(prep, method.keep_bos, method.keep_first_token) and not prep.has_bos:
        causes.append("position 0 moves along the path, and without BOS it is the model's attention sink, where "
                      "a real model changes abruptly (SmolLM2-135M: gaps of 100-1000% at any step count); keep it "
                      "with keep_first_token=None (the default)")
    if isinstance(method.baseline, str) and method.baseline == "zero" and model.cfg.normalization_type is not None:
        causes.append("the zero baseline makes every norm layer divide a near-zero vector near alpha = 0, where the "
                      "integrand jumps; use baseline='mean' (the default)")
    if abs(float(gap[t])) < 1e-3:
        causes.append(f"F(x) - F(x') is only {float(gap[t]):.2g}, so a small delta is a large share of it")
    causes.append("if the gap shrinks with more steps, raise n_steps or use rule='adaptive'; "
                  "ig_convergence(model, prompt, target, ...) measures it over several step counts")
    warnings.warn(f"{msg} Likely cause / what to do: " + "; ".join(causes) + ".", CompletenessWarning, stacklevel=5)


def _describe(baseline: Any) -> str:
    if isinstance(baseline, Tensor):
        return f"tensor{tuple(baseline.shape)}"
    return repr(baseline)
