"""Exact per-edge patching: the metric change when one edge alone is patched, for every edge.

``score[s, r] = mean_b metric(model with only s -> r patched) - mean_b metric(clean model)``.
Edges are evaluated as a batch of one-hot patch masks (``chunk`` masks per forward pass), so
``E`` edges cost ``E / chunk`` passes of ``chunk * batch`` rows instead of ``E`` passes.

**Precision.** The patched forward passes run in the model's dtype; the metric sees their
logits cast to float32 and the means and differences are float32. On a bf16 model each run's
logits carry bf16 rounding (relative ~4e-3), so scores much smaller than that times the metric
are rounding, not effect: compare such edges on a float32 copy of the model.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.validation import check_count
from mechinterp.core.precision import runs_synced
from mechinterp.circuits.engine import PatchSetup, check_metric_output, max_masks_per_pass, patch_edges
from mechinterp.core.metrics import Metric

__all__ = ["exact_scores", "metric_per_mask", "metrics_of_masks"]


def metric_per_mask(metric: Metric, logits: Float[Tensor, "k batch pos d_vocab"]) -> Float[Tensor, " k"]:
    """The mean metric of each mask's run."""
    return torch.stack([check_metric_output(metric, metric(row.float()), row.shape[0]).mean() for row in logits])


@runs_synced
def metrics_of_masks(
    model: Any, setup: PatchSetup, metric: Metric, masks: Float[Tensor, "k n_senders n_receivers"],
    chunk: int | None = None,
) -> Float[Tensor, " k"]:
    """The mean metric of each mask's patched run, one chunk of masks at a time (only a chunk's logits are held).

    Example:
        >>> metrics_of_masks(model, setup, task.metric, torch.zeros(1, *setup.graph.real.shape))  # doctest: +SKIP
    """
    check_count(chunk, "chunk", none_ok=True)
    masks = torch.as_tensor(masks)
    masks = masks[None] if masks.ndim == 2 else masks
    step = min(chunk or len(masks), max_masks_per_pass(model, setup))
    return torch.cat([metric_per_mask(metric, patch_edges(model, setup, masks[i : i + step])).cpu()
                      for i in range(0, len(masks), step)])


@runs_synced
def exact_scores(
    model: Any, setup: PatchSetup, metric: Metric, chunk: int = 32, candidates: Tensor | None = None
) -> Float[Tensor, "n_senders n_receivers"]:
    """Patch each real edge alone and record the change of the mean metric.

    Args:
        chunk: masks per forward pass.
        candidates: optional ``[n_senders, n_receivers]`` bool restricting which edges are scored
            (others get 0), e.g. from a node-attribution first pass.

    Example:
        >>> exact_scores(model, prepare_edge_patching(model, clean, corrupted), task.metric)  # doctest: +SKIP
    """
    check_count(chunk, "chunk", none_ok=True)
    g = setup.graph
    real = g.real if candidates is None else g.real & candidates.to(torch.bool)
    rows, cols = torch.nonzero(real, as_tuple=True)
    scores = torch.zeros(g.n_senders, g.n_receivers)
    base = metric_per_mask(metric, patch_edges(model, setup, torch.zeros(g.real.shape)))[0]
    for i in range(0, len(rows), chunk):
        r, c = rows[i : i + chunk], cols[i : i + chunk]
        masks = torch.zeros(len(r), *g.real.shape)
        masks[torch.arange(len(r)), r, c] = 1.0
        values = metric_per_mask(metric, patch_edges(model, setup, masks)).cpu()
        scores[r, c] = values - base.cpu()
    return scores
