"""Attribution patching (Nanda 2023) and its integrated-gradients refinement (EAP-IG).

Attribution patching replaces every patched run by a first-order Taylor expansion around
the base run: the effect of patching activation ``a`` from ``a_base`` to ``a_src`` is

.. math:: m(a_{src}) - m(a_{base}) \\approx (a_{src} - a_{base}) \\cdot \\nabla_a m \\,|_{base}

so one forward pass on the source prompts, one on the base prompts and one backward pass
give the approximate effect of *every* patch at every site at once. It is exact where the
metric is linear in the activation (e.g. the last layer's attention output of a model
without LayerNorm under a logit-difference metric) and can be far off through saturated
non-linearities.

The integrated-gradients refinement (``ig_steps=n``) averages the gradient over ``n``
points on the straight line from the base to the source *input* (the residual stream
before block 0, as EAP-IG does), still a single backward pass over a batch of ``n``
interpolated inputs stacked together. It equals the plain method when ``n = 1`` and
the path is linear.

Precision: forward and backward passes run in the model's dtype; the metric is taken to
float32 before the backward pass; the integrated-gradients path is interpolated in float32
(rounded once to the model's dtype); gradients are converted to float32, and their sum over
the path and the products ``(a_src - a_base) . grad`` summed over features are float32. A
non-finite gradient raises :class:`~mechinterp.errors.NonFiniteError` (with a hint for fp16).

:func:`compare_with_exact` runs both and reports how well they agree.

Example:
    >>> from mechinterp.patching import attribution_patch, compare_with_exact
    >>> results = attribution_patch(model, task, sites=["resid_pre", "z"])  # doctest: +SKIP
    >>> compare_with_exact(model, task, site="z", by="head").pearson  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mechinterp.core import metrics
from mechinterp.core.validation import check_count
from mechinterp.core.precision import fp16_hint, runs_synced
from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError, NonFiniteError
from mechinterp.patching.activation import activation_patch, check_mode
from mechinterp.patching.engine import collect
from mechinterp.patching.engine import model_flags
from mechinterp.patching.inputs import Metric, evaluate_metric, prepare_patch_inputs
from mechinterp.patching.result import PatchResult
from mechinterp.patching.sweeps import make_sweep
from mechinterp.viz import escape, figure_to_img_tag

__all__ = ["attribution_patch", "compare_with_exact", "AttributionComparison"]

DEFAULT_SITES = ("resid_pre", "attn_out", "mlp_out", "z")


def _gradients(
    model: Any, base_tokens: Tensor, source_resid0: Tensor | None, hooks: Sequence[str], metric: Metric, ig_steps: int | None
) -> tuple[dict[str, Tensor], Tensor]:
    """Activations of the base run and the (path-averaged) gradient of the mean metric."""
    batch = base_tokens.shape[0]
    acts: dict[str, Tensor] = {}

    def keep(act: Tensor, hook: Any) -> Tensor:
        acts[hook.name] = act
        return act

    base_resid0 = _resid0(model, base_tokens)
    dtype = base_resid0.dtype
    with torch.enable_grad(), model_flags(model, hooks), model.hooks(fwd_hooks=[(h, keep) for h in hooks]):
        if ig_steps is None:
            logits = model(base_resid0.clone().requires_grad_(True), start_at_layer=0)
            values = evaluate_metric(metric, logits, batch)
            loss = metric(logits).float().mean()
        else:
            # The path is interpolated in float32 and rounded once to the model's dtype.
            alphas = (torch.arange(ig_steps, dtype=torch.float32, device=base_resid0.device) + 0.5) / ig_steps
            b32, s32 = base_resid0.float(), source_resid0.float()  # type: ignore[union-attr]
            inp = b32[None] + alphas[:, None, None, None] * (s32 - b32)[None]
            inp = inp.reshape(-1, *base_resid0.shape[1:]).to(dtype).requires_grad_(True)
            logits = model(inp, start_at_layer=0)
            values = torch.zeros(batch)
            loss = sum(metric(chunk).float().mean() for chunk in logits.split(batch)) / ig_steps
        grads = torch.autograd.grad(loss, [acts[h] for h in hooks], allow_unused=True)
    out = {}
    for h, g in zip(hooks, grads):
        # Gradients come back in the model's dtype; their sum over the path is taken in float32.
        g = torch.zeros(acts[h].shape, device=acts[h].device) if g is None else g.detach().float()
        if not bool(torch.isfinite(g).all()):
            raise NonFiniteError(f"The gradient of the metric at {h} is not finite." + fp16_hint(dtype))
        out[h] = g.reshape(-1, batch, *g.shape[1:]).sum(0) if ig_steps is not None else g
    return out, values


def _resid0(model: Any, tokens: Tensor) -> Tensor:
    """The residual stream entering block 0 (embeddings plus positional embeddings)."""
    with torch.no_grad():
        return model(tokens, stop_at_layer=0).detach()


@runs_synced
def attribution_patch(
    model: Any,
    clean: Any,
    corrupted: Any = None,
    metric: Metric | str | None = None,
    *,
    sites: str | Sequence[str] = DEFAULT_SITES,
    by: str | Sequence[str] = "position",
    direction: str = "denoising",
    ig_steps: int | None = None,
    answers: Any = None,
    normalise: bool = True,
) -> PatchResult | dict[str, PatchResult]:
    """Approximate activation patching at every site with gradients.

    Args:
        model / clean / corrupted / metric / answers / direction / normalise: as
            :func:`~mechinterp.patching.activation_patch`.
        sites: one site (returns a :class:`PatchResult`) or several (returns a dict).
        by: the sweep axes, as in activation patching (applied to every site).
        ig_steps: ``None`` for plain attribution patching (2 forwards, 1 backward); ``n``
            for the integrated-gradients refinement over ``n`` interpolated inputs.

    Returns:
        Results shaped like :func:`activation_patch`'s (``raw`` = the predicted mean
        metric), ``method="attribution"`` or ``"attribution_ig"``.

    Example:
        >>> attribution_patch(model, task, sites="z", by="head").top(3)  # doctest: +SKIP
    """
    check_mode(direction, None)
    check_count(ig_steps, "ig_steps", none_ok=True)
    single = isinstance(sites, str)
    site_list = [sites] if single else list(sites)
    if not site_list:
        raise MechinterpError("No sites given: pass e.g. sites=['resid_pre', 'z'].")
    for s in site_list:
        make_sweep(model, s, by, ["?"], positions=0)
    inputs = prepare_patch_inputs(model, clean, corrupted, metric, answers=answers)
    sweeps = [make_sweep(model, s, by, inputs.str_tokens) for s in site_list]
    hooks = sorted({h for sw in sweeps for h in sw.hooks.values()})
    base_tokens, source_tokens = (inputs.corrupted, inputs.clean) if direction == "denoising" else (inputs.clean, inputs.corrupted)
    source, target_m = collect(model, source_tokens, hooks, inputs.metric)
    source_resid0 = _resid0(model, source_tokens) if ig_steps is not None else None
    grads, _ = _gradients(model, base_tokens, source_resid0, hooks, inputs.metric, ig_steps)
    base_acts, base_m = collect(model, base_tokens, hooks, inputs.metric)
    base_value, target = float(base_m.mean()), float(target_m.mean())
    if normalise and abs(target - base_value) < 1e-8:
        raise NonFiniteError("Base and source runs have the same mean metric: normalised effects are undefined; pass normalise=False.")
    results = {}
    for sw in sweeps:
        # (source - base) . gradient, in float32 whatever the model's dtype
        contrib = {h: ((source[h].float() - base_acts[h].float()) * grads[h]).sum(0) for h in set(sw.hooks.values())}
        variants = sw.variants(contrib)
        effects = torch.stack([(p.mask.to(p.source.device) * p.source).sum() for (p,) in variants]).cpu()
        raw = (base_value + effects).reshape(sw.shape)
        values = metrics.normalise(raw, clean=target, corrupted=base_value) if normalise else raw.clone()
        results[sw.site] = PatchResult(
            values=values, raw=raw, dims=sw.axes, labels=sw.labels, site=sw.site,
            method="attribution" if ig_steps is None else "attribution_ig", direction=direction,
            metric=inputs.metric_name, normalised=normalise, base_value=base_value, target_value=target,
            tokens=inputs.str_tokens,
        )
    return results[site_list[0]] if single else results


@dataclass(frozen=True, eq=False)
class AttributionComparison(AbstractResult):
    """Attribution patching against exact activation patching on the same sweep.

    Attributes:
        exact / approx: the two results.
        pearson / spearman: correlations of their values over the sweep.
        max_abs_error: the largest absolute difference of the (normalised) values.
        top_k_overlap: the fraction of the exact top-``k`` entries (by magnitude, ``k`` =
            10 or fewer) also in the approximation's top ``k``.
    """

    exact: PatchResult
    approx: PatchResult
    pearson: float
    spearman: float
    max_abs_error: float
    top_k_overlap: float

    def plot(self, ax: Any = None) -> Any:
        """A scatter of approximate against exact effects."""
        from mechinterp.viz import pyplot

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(4, 4)) if ax is None else (ax.figure, ax)
        x, y = self.exact.values.flatten().numpy(), self.approx.values.flatten().numpy()
        ax.scatter(x, y, s=10)
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        ax.set_xlabel("exact activation patching")
        ax.set_ylabel(self.approx.method)
        ax.set_title(f"{self.exact.site}: r = {self.pearson:.3f}")
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        return (
            f"<section><h3>{escape(self.approx.method)} vs exact patching: {escape(self.exact.site)}</h3>"
            f"<p>Pearson r = {self.pearson:.4f}, Spearman rho = {self.spearman:.4f}, max |error| = "
            f"{self.max_abs_error:.4g}, top-k overlap = {self.top_k_overlap:.2f}</p>{figure_to_img_tag(self.plot())}</section>"
        )


def _rank(x: Tensor) -> Tensor:
    return x.argsort().argsort().float()


def _pearson(x: Tensor, y: Tensor) -> float:
    x, y = x - x.mean(), y - y.mean()
    denom = float(x.norm() * y.norm())
    return float((x * y).sum()) / denom if denom > 0 else float("nan")


@runs_synced
def compare_with_exact(
    model: Any,
    clean: Any,
    corrupted: Any = None,
    metric: Metric | str | None = None,
    *,
    site: str = "resid_pre",
    by: str | Sequence[str] = "position",
    ig_steps: int | None = None,
    **kwargs: Any,
) -> AttributionComparison:
    """Run attribution patching and exact (batched) activation patching on one sweep and compare.

    Example:
        >>> cmp = compare_with_exact(model, task, site="z", by="head")  # doctest: +SKIP
        >>> cmp.pearson  # doctest: +SKIP
    """
    approx = attribution_patch(model, clean, corrupted, metric, sites=site, by=by, ig_steps=ig_steps, **kwargs)
    exact = activation_patch(model, clean, corrupted, metric, site=site, by=by, **kwargs)
    assert isinstance(approx, PatchResult)
    x, y = exact.values.flatten().float(), approx.values.flatten().float()
    k = min(10, x.numel())
    top_x, top_y = set(x.abs().topk(k).indices.tolist()), set(y.abs().topk(k).indices.tolist())
    return AttributionComparison(
        exact=exact, approx=approx, pearson=_pearson(x, y), spearman=_pearson(_rank(x), _rank(y)),
        max_abs_error=float((x - y).abs().max()), top_k_overlap=len(top_x & top_y) / k,
    )
