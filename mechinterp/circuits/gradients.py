"""Gradient edge scores: EAP, EAP-IG over inputs, EAP-IG over activations, node attribution.

All score an edge ``s -> r`` as a first-order estimate of what removing it does to the metric::

    score[s, r] = (patched_s - clean_s) . mean_t  d metric / d input_r  (at point t)

* **EAP** (Syed et al. 2023): one point, the clean run. With the corrupted run this is
  2 forward passes and 1 backward pass; it equals the gradient of the edge-mask objective
  ``metric(patch_edges(alpha))`` at ``alpha = 0`` (tested).
* **EAP-IG, inputs** (Hanna et al. 2024): the input embeddings move from the ablation
  baseline to the clean ones, ``x_t = base + t (clean - base)``, ``t = 1/m .. 1``.
* **EAP-IG, activations**: integrated gradients of the edge-mask objective: every edge is
  part-patched (``alpha = t`` on all edges, so each receiver reads ``1 - t`` of its senders'
  run values and ``t`` of the patched ones) and ``d metric / d alpha`` is averaged over ``t``
  (midpoints of ``[0, 1]``); the scores then sum to the total effect of patching every edge.
* **Node attribution** (cheap first pass): ``(patched_s - clean_s) . d metric / d out_s``
  per sender, from one plain forward and backward (no split q/k/v inputs); it equals the
  row sums of EAP.

``metric`` maps logits ``[batch, pos, d_vocab]`` to ``[batch]``; the objective is its mean.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.circuits.engine import PatchSetup, run_edges
from mechinterp.errors import MechinterpError, NonFiniteError

__all__ = ["eap_scores", "eap_ig_inputs_scores", "eap_ig_activations_scores", "mask_gradient", "node_attribution"]

Metric = Callable[[Tensor], Tensor]


def _objective(metric: Metric, logits: Tensor) -> Tensor:
    value = metric(logits[0])
    if value.ndim != 1 or value.shape[0] != logits.shape[1]:
        raise MechinterpError(f"metric must map logits [batch, pos, d_vocab] to [batch]; got shape {tuple(value.shape)}.")
    if not torch.isfinite(value).all():
        raise NonFiniteError("The metric returned NaN or infinite values; check the task's answers and logits.")
    return value.mean()


def _gradient_point(
    model: Any, setup: PatchSetup, metric: Metric, alpha: Tensor | None = None, embed_fn: Callable | None = None
) -> list[tuple[int, Tensor]]:
    """Gradients of the mean metric with respect to every receiver input at one point."""
    inputs: list[tuple[int, Tensor]] = []
    with torch.enable_grad():

        def leaf(x: Tensor) -> Tensor:
            x = x.detach().requires_grad_(True)
            return embed_fn(x) if embed_fn is not None else x

        logits, _ = run_edges(model, setup.graph, setup.tokens, setup.patched if alpha is not None else None, alpha,
                              embed_fn=leaf, receiver_inputs=inputs)
        grads = torch.autograd.grad(_objective(metric, logits), [x for _, x in inputs], allow_unused=True)
    return [(first, torch.zeros_like(x) if g is None else g) for (first, x), g in zip(inputs, grads)]


def _scores_from(setup: PatchSetup, points: list[list[tuple[int, Tensor]]]) -> Float[Tensor, "n_senders n_receivers"]:
    """Average receiver gradients over points and contract with ``patched - clean``."""
    g = setup.graph
    diff = setup.diff  # [batch, pos, n_senders, d_model]
    scores = torch.zeros(g.n_senders, g.n_receivers, device=diff.device)
    for first_point in zip(*points):
        first = first_point[0][0]
        grad = sum(p[1] for p in first_point) / len(first_point)
        if grad.ndim == 4:  # q/k/v input of every head: [batch pos head_index d_model], columns first + 3h
            cols = torch.arange(first, first + 3 * grad.shape[2], 3)
            scores[:, cols] = torch.einsum("bpsd,bphd->sh", diff, grad.to(diff.dtype))
        else:
            scores[:, first] = torch.einsum("bpsd,bpd->s", diff, grad.to(diff.dtype))
    return scores * g.real.to(scores.device)


def eap_scores(model: Any, setup: PatchSetup, metric: Metric) -> Float[Tensor, "n_senders n_receivers"]:
    """EAP: ``(patched_s - clean_s) . d metric / d input_r`` on the clean run.

    Example:
        >>> setup = prepare(model, task.clean_tokens, task.corrupted_tokens)  # doctest: +SKIP
        >>> eap_scores(model, setup, task.metric).shape  # doctest: +SKIP
    """
    return _scores_from(setup, [_gradient_point(model, setup, metric)])


def eap_ig_inputs_scores(model: Any, setup: PatchSetup, metric: Metric, steps: int = 5) -> Float[Tensor, "n_senders n_receivers"]:
    """EAP-IG over the input embeddings (``steps`` points from the baseline embedding to the clean one)."""
    if steps < 1:
        raise MechinterpError(f"steps must be at least 1 (got {steps}).")
    base = setup.patched[:, :, 0]  # the ablated embedding: corrupted, mean or zero
    points = []
    for i in range(1, steps + 1):
        t = i / steps
        points.append(_gradient_point(model, setup, metric, embed_fn=lambda x, t=t: base + t * (x - base)))
    return _scores_from(setup, points)


def eap_ig_activations_scores(model: Any, setup: PatchSetup, metric: Metric, steps: int = 5) -> Float[Tensor, "n_senders n_receivers"]:
    """EAP-IG over activations: the edge-mask gradient averaged along ``alpha = t`` on every edge.

    ``t`` runs over the midpoints ``(i - 1/2) / steps`` of ``[0, 1]``, so the scores sum to
    ``m(every edge patched) - m(clean)`` up to the midpoint rule's error (completeness; tested).
    """
    if steps < 1:
        raise MechinterpError(f"steps must be at least 1 (got {steps}).")
    return sum(mask_gradient(model, setup, metric, at=(i - 0.5) / steps) for i in range(1, steps + 1)) / steps


def mask_gradient(model: Any, setup: PatchSetup, metric: Metric, at: float = 0.0) -> Float[Tensor, "n_senders n_receivers"]:
    """Gradient of ``mean metric(patch_edges(alpha))`` with respect to ``alpha``, at ``alpha = at`` everywhere.

    At ``at = 0`` this is EAP (the test suite checks that it equals :func:`eap_scores`).
    """
    alpha = (torch.full(setup.graph.real.shape, float(at), device=setup.patched.device) * setup.graph.real)[None]
    alpha.requires_grad_(True)
    with torch.enable_grad():
        logits, _ = run_edges(model, setup.graph, setup.tokens, setup.patched, alpha)
        (grad,) = torch.autograd.grad(_objective(metric, logits), alpha)
    return grad[0] * setup.graph.real.to(grad.device)


def node_attribution(model: Any, setup: PatchSetup, metric: Metric) -> Float[Tensor, " n_senders"]:
    """Attribution patching per sender node: ``(patched_s - clean_s) . d metric / d out_s`` (one forward/backward).

    The gradient with respect to a head's output is the gradient at its layer's ``hook_attn_out``
    (the heads are summed into it), so no split inputs are needed.
    """
    g = setup.graph
    cfg = model.cfg
    sites = {"blocks.0.hook_resid_pre": [0]}
    for layer in range(cfg.n_layers):
        heads, mlp = g.layer_senders(layer)
        sites[f"blocks.{layer}.hook_attn_out"] = list(range(heads.start, heads.stop))
        if mlp is not None:
            sites[f"blocks.{layer}.hook_mlp_out"] = [mlp]
    grads: dict[str, Tensor] = {}

    def keep(x: Tensor, hook: Any) -> Tensor:
        grads[hook.name] = x
        return x

    def leaf(x: Tensor, hook: Any) -> Tensor:
        x = x.detach().requires_grad_(True)
        grads[hook.name] = x
        return x

    hooks = [(name, leaf if name == "blocks.0.hook_resid_pre" else keep) for name in sites]
    with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
        logits = model(setup.tokens)
        names = list(sites)
        out = torch.autograd.grad(_objective(metric, logits[None]), [grads[n] for n in names], allow_unused=True)
    diff = setup.diff
    scores = torch.zeros(g.n_senders, device=diff.device)
    for name, grad in zip(names, out):
        if grad is None:
            continue
        idx = sites[name]
        scores[idx] = torch.einsum("bpsd,bpd->s", diff[:, :, idx], grad.to(diff.dtype))
    return scores
