"""Attention flow (Abnar & Zuidema, 2020): max-flow through the layered attention graph.

Rollout multiplies attention through the layers, which mixes all paths. Attention flow
treats the network as a flow network instead: nodes are (layer boundary ``l``, token ``i``)
for ``l = 0 .. L``; an edge from ``(l + 1, i)`` down to ``(l, j)`` has capacity
``Â_l[i, j]``, the residual-augmented, row-normalised attention of rollout
(:func:`~mechinterp.attention.rollout.augment_with_residual`). The flow from output token
``q`` to input token ``k`` is the maximum flow from node ``(L, q)`` to node ``(0, k)``:

    F[q, k] = maxflow((L, q) → (0, k)).

Every node's outgoing capacities sum to 1, so ``0 <= F[q, k] <= 1``. Unlike rollout, rows
need not sum to 1: each entry is its own max-flow problem. That is one max-flow per
(query, key) pair on a graph with about ``L · n² / 2`` edges, so it is for small contexts:
above ``max_positions`` tokens :class:`FlowTooLargeError` says what to do. Max-flows run
with networkx (``preflow_push``).

``sink="first"`` (or positions) edits the patterns as rollout does before the capacities are
built (:mod:`mechinterp.attention.sinks`); then no flow from a non-sink output reaches a sink:
``F[q, s] = 0``.

Example:
    >>> from mechinterp.attention import attention_flow
    >>> result = attention_flow(model, "t1 t2 t3 t1 t2", queries=[-1])  # doctest: +SKIP
    >>> result.scores(0)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.attention.inputs import query_positions, read_patterns
from mechinterp.core.precision import runs_synced
from mechinterp.attention.maps import AttentionMap
from mechinterp.attention.rollout import HeadFusion, layer_range, augment_with_residual, fuse_heads
from mechinterp.attention.sinks import Sink, SinkMode, exclude_sinks, resolve_sinks, sink_share
from mechinterp.errors import MechinterpError, NonFiniteError, ShapeMismatchError

__all__ = ["FlowTooLargeError", "max_flow_matrix", "attention_flow"]

DEFAULT_MAX_POSITIONS = 32


class FlowTooLargeError(MechinterpError):
    """Attention flow asked for on a context too long for one max-flow per token pair."""


def max_flow_matrix(
    augmented: Float[Tensor, "layer query_pos key_pos"],
    queries: Sequence[int] | None = None,
    *,
    n_positions: int | None = None,
) -> Float[Tensor, "query_pos key_pos"]:
    """Max-flow values ``F[q, k]`` through a layered graph with the given capacities.

    Args:
        augmented: ``[layer, pos, pos]`` capacities, layer 0 at the input: the edge from
            ``(l + 1, i)`` to ``(l, j)`` has capacity ``augmented[l, i, j]``.
        queries: output positions to compute (default all); other rows stay zero.
        n_positions: only the first ``n_positions`` tokens (the rest is padding).

    Example:
        >>> import torch
        >>> a = torch.tensor([[[1.0, 0.0], [0.3, 0.7]]])
        >>> max_flow_matrix(a)[1, 0].item()
        0.3...
    """
    import networkx as nx
    from networkx.algorithms.flow import preflow_push

    if augmented.ndim != 3 or augmented.shape[1] != augmented.shape[2]:
        raise ShapeMismatchError(f"capacities must be [layer, pos, pos]; got {tuple(augmented.shape)}.")
    if not torch.isfinite(augmented).all() or (augmented < 0).any():
        raise NonFiniteError("Flow capacities must be finite and non-negative.")
    n_layers = augmented.shape[0]
    n = augmented.shape[1] if n_positions is None else n_positions
    caps = augmented[:, :n, :n].detach().double().cpu().numpy()
    graph = nx.DiGraph()
    for layer in range(n_layers):
        for i in range(n):
            for j in range(n):
                if caps[layer, i, j] > 0:
                    graph.add_edge((layer + 1, i), (layer, j), capacity=float(caps[layer, i, j]))
    out = torch.zeros(augmented.shape[1], augmented.shape[2], dtype=torch.float64)
    rows = range(n) if queries is None else queries
    for q in rows:
        source = (n_layers, q)
        if source not in graph:
            continue
        reachable = nx.descendants(graph, source)
        for k in range(n):
            if (0, k) in reachable:
                out[q, k] = nx.maximum_flow_value(graph, source, (0, k), flow_func=preflow_push)
    return out.to(augmented.dtype)


@runs_synced
def attention_flow(
    model: Any,
    prompts: Any,
    *,
    head_fusion: HeadFusion = "mean",
    residual_weight: float = 0.5,
    start_layer: int = 0,
    end_layer: int | None = None,
    queries: Sequence[int] | None = None,
    query: int = -1,
    max_positions: int = DEFAULT_MAX_POSITIONS,
    sink: Sink = None,
    sink_mode: SinkMode = "self",
    batch_size: int = 32,
) -> AttentionMap:
    """Attention flow of ``model`` on ``prompts`` (patterns read through the shared cache).

    Args:
        model: a ``HookedTransformer``.
        prompts: text prompt(s), token ids, a ``Tokenized`` batch or a ``SharedCache``
            (``positions="all"``).
        head_fusion, residual_weight, start_layer, end_layer: as for rollout.
        queries: output positions whose rows to compute (negative count from each prompt's
            end); default every row. ``[-1]`` computes only the last token's row — n times
            cheaper.
        query: the output position of :attr:`AttentionMap.token_scores` (it is added to
            ``queries``).
        max_positions: refuse prompts longer than this (the cost grows like ``L · n⁴``).
        sink, sink_mode: attention-sink positions to exclude and how, as for
            :func:`~mechinterp.attention.attention_rollout`.
        batch_size: prompts per forward pass.

    Raises:
        FlowTooLargeError: a prompt longer than ``max_positions``.

    Returns:
        An :class:`AttentionMap` with ``method="flow"``; ``token_scores[b] = F[b, query]``.
        Without a sink, ``sink_share`` is position 0's share of that row; with one it is
        ``None`` (the plain flow is not computed).
    """
    start, end = layer_range(model.cfg.n_layers, start_layer, end_layer)
    batch = read_patterns(model, prompts, list(range(start, end)), batch_size=batch_size)
    longest = int(batch.lengths.max())
    if longest > max_positions:
        raise FlowTooLargeError(
            f"Attention flow needs one max-flow per (query, key) pair on a graph of "
            f"{end - start} x {longest}^2 edges; the longest prompt has {longest} tokens, above "
            f"max_positions={max_positions}. Use attention_rollout for long prompts, shorten the "
            f"prompt, pass queries=[-1] and a larger max_positions to compute one row only."
        )
    sinks = resolve_sinks(sink, batch.lengths)
    selected = exclude_sinks(batch.patterns, sinks, sink_mode)
    aug = augment_with_residual(fuse_heads(selected, head_fusion), residual_weight)
    qpos = query_positions(batch.lengths, query)
    matrix = torch.zeros(aug.shape[0], aug.shape[2], aug.shape[3], dtype=aug.dtype)
    for b in range(aug.shape[0]):
        n = int(batch.lengths[b])
        rows = None
        if queries is not None:
            rows = sorted({q + n if q < 0 else q for q in queries} | {int(qpos[b])})
            bad = [q for q in rows if not 0 <= q < n]
            if bad:
                raise MechinterpError(f"Query position(s) {bad} fall outside prompt {b}, which has {n} tokens.")
        matrix[b] = max_flow_matrix(aug[b], rows, n_positions=n)
    scores = matrix[torch.arange(len(qpos)), qpos]
    return AttentionMap(
        method="flow",
        str_tokens=batch.str_tokens,
        matrix=matrix,
        token_scores=scores,
        query_positions=qpos,
        lengths=batch.lengths,
        parameters={
            "head_fusion": head_fusion,
            "residual_weight": residual_weight,
            "start_layer": start,
            "end_layer": end,
            "query": query,
            "queries": None if queries is None else list(queries),
            "sink": sink if sink is None or isinstance(sink, str) else sinks,
        },
        sink_positions=sinks,
        sink_mode=sink_mode if sinks else None,
        sink_share=None if sinks else sink_share(scores, sinks),
        dtype=batch.dtype,
    )
