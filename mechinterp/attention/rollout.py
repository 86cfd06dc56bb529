"""Attention rollout (Abnar & Zuidema, 2020, "Quantifying Attention Flow in Transformers").

Attention says where one layer reads from, but information also flows through the residual
stream and across layers. Rollout tracks both. Per layer ``l``:

    Â_l = normalise_rows( (1 - w) · fuse_h(A_l,h) + w · I ),     w = residual_weight = 0.5

with ``fuse_h`` the mean (paper), max or min over heads. The joint attention from the
output of layer ``end - 1`` back to the input of layer ``start`` is the product

    R = Â_{end-1} · … · Â_{start+1} · Â_start          R[q, k]: share of token k in output q.

Each ``Â_l`` is row-stochastic, so ``R`` is too (rows sum to 1). The products run as
batched matrix products over prompts (``torch.bmm``), one per layer. Padding needs no care:
the cache zeroes padding rows and columns, so a padding row of ``Â`` is the identity row and
real tokens never touch padding.

On a pretrained model nearly all of ``R``'s mass ends on the first token, the attention sink
(SmolLM2-135M: 100 % on "The" in "The capital of France is"). ``sink="first"`` moves the
attention paid to it back onto each query before the heads are fused
(:mod:`mechinterp.attention.sinks`), and the result says how much the sink held without it.

Example:
    >>> import mechinterp
    >>> from mechinterp.attention import attention_rollout
    >>> model = mechinterp.load("zoo:attn-only-2l")
    >>> result = attention_rollout(model, ["t1 t2 t3 t1 t2", "t4 t5 t4"])
    >>> result.matrix.sum(-1)[0, :6]  # rows sum to 1  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.attention.inputs import query_positions, read_patterns
from mechinterp.core.precision import runs_synced
from mechinterp.attention.maps import AttentionMap
from mechinterp.attention.sinks import Sink, SinkMode, exclude_sinks, resolve_sinks, sink_share
from mechinterp.errors import MechinterpError, NonFiniteError, ShapeMismatchError

__all__ = ["HeadFusion", "fuse_heads", "augment_with_residual", "layer_range", "rollout_from_patterns", "attention_rollout"]

HeadFusion = Literal["mean", "max", "min"]


def fuse_heads(
    patterns: Float[Tensor, "batch layer head_index query_pos key_pos"], head_fusion: HeadFusion = "mean"
) -> Float[Tensor, "batch layer query_pos key_pos"]:
    """Combine the heads of each layer: ``"mean"`` (Abnar & Zuidema), ``"max"`` or ``"min"``."""
    if head_fusion == "mean":
        return patterns.mean(dim=2)
    if head_fusion == "max":
        return patterns.amax(dim=2)
    if head_fusion == "min":
        return patterns.amin(dim=2)
    raise MechinterpError(f"head_fusion must be 'mean', 'max' or 'min'; got {head_fusion!r}.")


def augment_with_residual(
    fused: Float[Tensor, "batch layer query_pos key_pos"], residual_weight: float = 0.5
) -> Float[Tensor, "batch layer query_pos key_pos"]:
    """``normalise_rows((1 - w)·A + w·I)``: attention plus the residual connection."""
    if not 0.0 <= residual_weight <= 1.0:
        raise MechinterpError(f"residual_weight must be in [0, 1] (0.5 in the paper); got {residual_weight}.")
    aug = fused * (1.0 - residual_weight)  # a new tensor: the in-place ops below leave `fused` alone
    aug.diagonal(dim1=-2, dim2=-1).add_(residual_weight)
    return aug.div_(aug.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(aug.dtype).tiny))


def _check_patterns(patterns: Tensor) -> None:
    if patterns.ndim != 5:
        raise ShapeMismatchError(
            f"patterns must be [batch, layer, head_index, query_pos, key_pos]; got shape {tuple(patterns.shape)}. "
            "For one prompt add a batch dimension (patterns[None])."
        )
    if patterns.shape[-1] != patterns.shape[-2]:
        raise ShapeMismatchError(f"Self-attention patterns are square; got query x key = {tuple(patterns.shape[-2:])}.")
    if patterns.shape[1] == 0 or patterns.shape[-1] == 0:
        raise MechinterpError(f"patterns have no layers or no positions: shape {tuple(patterns.shape)}.")


def _check_finite(rollout: Tensor) -> None:
    # NaN/inf in any pattern propagates through fusion, renormalisation and the products, so
    # checking the [batch, pos, pos] result is enough (checking the 5-D input costs more than the rollout).
    if not torch.isfinite(rollout).all():
        raise NonFiniteError("patterns contain NaN or infinite values; check the model and its inputs.")


def layer_range(n_layers: int, start_layer: int, end_layer: int | None) -> tuple[int, int]:
    """``(start, end)`` of a half-open layer range, checked: ``end_layer=None`` means every layer up to the last.

    Raises:
        MechinterpError: not ``0 <= start_layer < end_layer <= n_layers``.
    """
    end = n_layers if end_layer is None else end_layer
    if not (0 <= start_layer < end <= n_layers):
        raise MechinterpError(
            f"Need 0 <= start_layer < end_layer <= {n_layers}; got start_layer={start_layer}, end_layer={end_layer}."
        )
    return start_layer, end


def rollout_from_patterns(
    patterns: Float[Tensor, "batch layer head_index query_pos key_pos"],
    *,
    head_fusion: HeadFusion = "mean",
    residual_weight: float = 0.5,
    start_layer: int = 0,
    end_layer: int | None = None,
    sink_positions: Sequence[int] = (),
    sink_mode: SinkMode = "self",
) -> Float[Tensor, "batch query_pos key_pos"]:
    """Rollout from attention patterns: ``Â_{end-1} ··· Â_start`` as batched matrix products.

    Args:
        patterns: ``[batch, layer, head, query, key]`` with rows summing to 1 (zero rows at padding).
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        residual_weight: ``w`` in ``(1 - w)·A + w·I``.
        start_layer, end_layer: roll out layers ``start_layer .. end_layer - 1`` (indices into
            the layer axis of ``patterns``).
        sink_positions, sink_mode: key positions whose attention is moved off before fusing
            heads (:func:`~mechinterp.attention.sinks.exclude_sinks`); ``()`` for none.

    Example:
        >>> import torch
        >>> eye = torch.eye(4).expand(1, 3, 2, 4, 4)
        >>> torch.equal(rollout_from_patterns(eye)[0], torch.eye(4))
        True
    """
    _check_patterns(patterns)
    start, end = layer_range(patterns.shape[1], start_layer, end_layer)
    # float32 whatever the patterns came in: 30 products of bf16 matrices would drift
    selected = exclude_sinks(patterns[:, start:end].float(), list(sink_positions), sink_mode)
    aug = augment_with_residual(fuse_heads(selected, head_fusion), residual_weight)
    rollout = aug[:, 0]
    for layer in range(1, end - start):
        rollout = torch.bmm(aug[:, layer], rollout)
    _check_finite(rollout)
    return rollout


@runs_synced
def attention_rollout(
    model: Any,
    prompts: Any,
    *,
    head_fusion: HeadFusion = "mean",
    residual_weight: float = 0.5,
    start_layer: int = 0,
    end_layer: int | None = None,
    query: int = -1,
    sink: Sink = None,
    sink_mode: SinkMode = "self",
    batch_size: int = 32,
) -> AttentionMap:
    """Attention rollout of ``model`` on ``prompts``, patterns read through the shared cache.

    Args:
        model: a ``HookedTransformer``.
        prompts: text prompt(s), token ids ``[batch, pos]``, a ``Tokenized`` batch, or a
            ``SharedCache`` made with ``positions="all"`` (reused, no new forward pass if
            the patterns are cached).
        head_fusion, residual_weight, start_layer, end_layer: see :func:`rollout_from_patterns`
            (layers are model layers here).
        query: the output position whose row gives :attr:`AttentionMap.token_scores`
            (negative counts from each prompt's end; default the last token).
        sink: attention-sink positions to exclude: ``None`` (default, plain rollout),
            ``"first"`` (position 0: recommended on pretrained models, where the plain map
            puts ~all of its mass there), an ``int`` or a list of positions.
        sink_mode: ``"self"`` (default: attention paid to a sink stays with the query, as a
            no-op) or ``"renormalise"`` (spread over the other keys, as TransformerLens's
            ``exclude_bos``); see :mod:`mechinterp.attention.sinks`.
        batch_size: prompts per forward pass.

    Returns:
        An :class:`AttentionMap` with ``method="rollout"``; ``token_scores[b]`` is
        ``R[b, query]`` (it sums to 1 and includes the query token itself). With a sink,
        ``token_scores[b, s] = 0`` at each sink ``s`` (unless the query is one), and
        ``sink_share`` is the sinks' share in the plain rollout; without, ``sink_share`` is
        position 0's share.

    Raises:
        MechinterpError: a sink position missing from a prompt, an unknown ``sink_mode``.

    Example:
        >>> result = attention_rollout(model, "t1 t2 t3 t1 t2", head_fusion="max")  # doctest: +SKIP
        >>> result.plot()  # doctest: +SKIP
    """
    start, end = layer_range(model.cfg.n_layers, start_layer, end_layer)
    batch = read_patterns(model, prompts, list(range(start, end)), batch_size=batch_size)
    patterns = batch.patterns.to(model.cfg.device)  # the cache stores on the CPU; multiply where the model runs
    sinks = resolve_sinks(sink, batch.lengths)
    settings = {"head_fusion": head_fusion, "residual_weight": residual_weight}
    matrix = rollout_from_patterns(patterns, sink_positions=sinks, sink_mode=sink_mode, **settings).cpu()
    qpos = query_positions(batch.lengths, query)
    rows = torch.arange(len(qpos))
    scores = matrix[rows, qpos] * batch.mask.to(matrix.dtype)
    plain = rollout_from_patterns(patterns, **settings).cpu()[rows, qpos] if sinks else scores
    return AttentionMap(
        method="rollout",
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
            "sink": sink if sink is None or isinstance(sink, str) else sinks,
        },
        sink_positions=sinks,
        sink_mode=sink_mode if sinks else None,
        sink_share=sink_share(plain, sinks),
        dtype=batch.dtype,
    )
