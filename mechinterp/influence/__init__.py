"""Training-data attribution: which training sequences made the model predict this?

For a query (a prompt and a target token, a logit difference or a task metric) every
training sequence gets a score: the first-order change of the query's measurement if the
model had been trained a little more on that sequence (positive = helpful).

* :class:`InfluenceIndex` — per-sequence training gradients (``torch.func`` ``vmap(grad)``),
  randomly projected (TRAK/LoGra) and stored in memory or on disk under a byte budget.
* Methods: ``"ekfac"`` (influence functions with an eigenvalue-corrected Kronecker-factored
  Gauss–Newton Hessian, :class:`EKFAC`), ``"kfac"``, ``"dot"`` (damped identity: gradient
  dot product), ``"cosine"``, and :func:`tracin` over saved checkpoints.
* :class:`InfluenceResult` — scores, top-k helpful/harmful sequences with per-token influence.

Example:
    >>> from mechinterp.influence import influence
    >>> result = influence(model, train_texts, [("<bos> the capital of Zorbia is", "Quux")])  # doctest: +SKIP
    >>> result.top(0, k=5)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mechinterp.core.precision import runs_synced
from mechinterp.influence.data import Query, TrainingSet, as_queries, as_training_set
from mechinterp.influence.ekfac import EKFAC
from mechinterp.influence.gradients import per_example_grads, per_token_grads, query_grads, select_params
from mechinterp.influence.index import METHODS, InfluenceIndex
from mechinterp.influence.layers import KroneckerLayer, kronecker_layers
from mechinterp.influence.projection import RandomProjection
from mechinterp.influence.result import InfluenceResult
from mechinterp.influence.store import GradientStore
from mechinterp.influence.tracin import load_checkpoints, tracin

__all__ = [
    "EKFAC", "GradientStore", "InfluenceIndex", "InfluenceResult", "KroneckerLayer", "METHODS", "Query", "RandomProjection",
    "TrainingSet", "as_queries", "as_training_set", "influence", "kronecker_layers", "load_checkpoints", "per_example_grads",
    "per_token_grads", "query_grads", "select_params", "tracin",
]


@runs_synced
def influence(
    model: Any,
    train: Any,
    queries: Any,
    *,
    method: str = "ekfac",
    top_k: int = 10,
    params: str | Sequence[str] | None = "matrices",
    projection_dim: int | None = 1024,
    memory_budget: int | float | str | None = "1GB",
    cache_dir: str | Path | None = None,
    batch_size: int = 8,
    per_token: bool = True,
    **hessian_kwargs: Any,
) -> InfluenceResult:
    """Score every training sequence for each query (one call: index, fit, score).

    Args:
        model: a ``HookedTransformer``.
        train: training sequences (texts, ``[n, pos]`` tokens, token lists, ``Tokenized``).
        queries: ``(prompt, target)`` pairs; target = token, ``(answer, wrong)`` or metric.
        method: ``"ekfac"`` (default), ``"kfac"``, ``"dot"`` or ``"cosine"``; for TracIn use
            :func:`tracin`.
        top_k: helpful and harmful sequences listed per query.
        params, projection_dim, memory_budget, cache_dir, batch_size: see :class:`InfluenceIndex`.
        per_token: per-token influence of the listed sequences.
        hessian_kwargs: ``damping``, ``fisher``, ``n_samples``, ``seed`` (see :class:`EKFAC`).

    Returns:
        An :class:`InfluenceResult`.

    Example:
        >>> r = influence(model, ["<bos> w1 w2 w3", "<bos> w4 w5"], [("<bos> w1 w2", "w3")], method="dot")  # doctest: +SKIP
        >>> r.top(0, k=1)  # doctest: +SKIP
        [0]
    """
    index = InfluenceIndex(model, method, params, projection_dim, memory_budget, cache_dir, batch_size, **hessian_kwargs)  # type: ignore[arg-type]
    return index.fit(train).score(queries, top_k=top_k, per_token=per_token)
