"""Reading attention patterns for the attention family, through the shared cache.

Every method here that needs patterns (views, head scores, rollout, flow) reads them with
:func:`read_patterns`, which goes through :class:`mechinterp.SharedCache` with
``positions="all"``: prompts are tokenised and checked once, batched, right-padded, and the
padding is zeroed out of the patterns (rows *and* columns), so a padded prompt gives the
same numbers as the prompt run alone.

Precision: patterns come in the model's dtype and are cast to float32 here, so every method
of the family computes in float32 whatever the model runs in. A bf16/fp16 pattern row sums to
1 only up to the rounding of its entries (each off by at most half an ulp, so the row by at
most ``eps / 2``: 0.0039 in bf16, 0.0005 in fp16), and :func:`check_rows` allows
``max(1e-3, eps)`` of the pattern's dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.core import SharedCache
from mechinterp.errors import MechinterpError, NonFiniteError

__all__ = ["PatternBatch", "read_patterns", "query_positions", "check_layers", "check_rows", "row_tolerance"]


@dataclass(frozen=True)
class PatternBatch:
    """Patterns of every prompt, with what is needed to interpret them.

    Attributes:
        patterns: ``[batch, layer, head_index, query_pos, key_pos]``, zero at padding.
        tokens: ``[batch, pos]`` token ids (right-padded).
        mask: ``[batch, pos]``, 1 for real tokens.
        lengths: ``[batch]`` real tokens per prompt.
        str_tokens: the string tokens of each prompt, padding excluded.
        layers: the layers read, in order.
        dtype: the dtype the model computed the patterns in (``"float32"``, ``"bfloat16"``...);
            ``patterns`` itself is always float32.
    """

    patterns: Float[Tensor, "batch layer head_index query_pos key_pos"]
    tokens: Int[Tensor, "batch pos"]
    mask: Int[Tensor, "batch pos"]
    lengths: Int[Tensor, " batch"]
    str_tokens: list[list[str]]
    layers: list[int]
    dtype: str = "float32"


def row_tolerance(dtype: torch.dtype) -> float:
    """How far a real pattern row of this dtype may sum from 1: ``max(1e-3, eps)``.

    Example:
        >>> row_tolerance(torch.float32), row_tolerance(torch.bfloat16)
        (0.001, 0.0078125)
    """
    if not dtype.is_floating_point:
        return 1e-3
    return max(1e-3, float(torch.finfo(dtype).eps))


def check_layers(model: Any, layers: Sequence[int] | None) -> list[int]:
    """Validate layer indices (negative ones count from the end); ``None`` = all layers."""
    n = model.cfg.n_layers
    if layers is None:
        return list(range(n))
    out = []
    for layer in layers:
        if not isinstance(layer, int) or not -n <= layer < n:
            raise MechinterpError(f"Layer {layer!r} does not exist: this model has layers 0..{n - 1}.")
        out.append(layer % n)
    if not out:
        raise MechinterpError("The layer list is empty: pass at least one layer, or None for all.")
    return out


def _str_tokens(model: Any, cache: SharedCache) -> list[list[str]]:
    if getattr(model, "tokenizer", None) is None:
        return [[str(int(t)) for t in cache.tokens[i, : int(cache.lengths[i])]] for i in range(len(cache))]
    return [cache.str_tokens(i) for i in range(len(cache))]


def read_patterns(
    model: Any,
    prompts: Any,
    layers: Sequence[int] | None = None,
    batch_size: int = 32,
) -> PatternBatch:
    """Attention patterns of ``prompts`` (text, token ids, ``Tokenized`` or a ``SharedCache``).

    Raises:
        MechinterpError: a cache made with ``positions`` other than ``"all"`` or with left
            padding, or a bad layer; the tokenisation errors of :func:`mechinterp.tokenize`.
        NonFiniteError: NaN or infinite attention (broken weights or inputs).
    """
    layers = check_layers(model, layers)
    if isinstance(prompts, SharedCache):
        cache = prompts
        if cache.positions != "all":
            raise MechinterpError(
                f"Attention methods need every query position: make the cache with positions='all' "
                f"(this one has positions={cache.positions!r})."
            )
        if cache.inputs.padding_side != "right":
            raise MechinterpError("Attention methods expect right padding: make the cache with padding_side='right'.")
    else:
        cache = SharedCache(model, prompts, positions="all", batch_size=batch_size, progress=False)
    stacked = cache.stack("pattern", layers)  # [layer, batch, head_index, query_pos, key_pos]
    patterns = stacked.permute(1, 0, 2, 3, 4).float()
    check_rows(patterns, cache.attention_mask, atol=row_tolerance(stacked.dtype))
    return PatternBatch(
        patterns=patterns,
        tokens=cache.tokens,
        mask=cache.attention_mask,
        lengths=cache.lengths,
        str_tokens=_str_tokens(model, cache),
        layers=layers,
        dtype=str(stacked.dtype).removeprefix("torch."),
    )


def check_rows(
    patterns: Float[Tensor, "batch layer head_index query_pos key_pos"], mask: Int[Tensor, "batch pos"], atol: float = 1e-3
) -> None:
    """Raise :class:`NonFiniteError` unless every real query row is finite and sums to 1 (± ``atol``).

    ``atol`` is 1e-3 for float32 patterns; pass :func:`row_tolerance` of the model's dtype for
    bf16/fp16 ones. TransformerLens replaces NaN attention by zeros, so NaN weights show up as rows that sum
    to 0 rather than as NaN; both are caught here.
    """
    if not torch.isfinite(patterns).all():
        raise NonFiniteError(
            "The model's attention patterns contain NaN or infinite values; check the weights "
            "(e.g. mechinterp.load the checkpoint again) and the dtype (use float32)."
        )
    sums = patterns.sum(-1)  # [batch, layer, head, query_pos]
    real = mask.bool().to(sums.device)[:, None, None, :].expand_as(sums)
    bad = real & ((sums - 1).abs() > atol)
    if bad.any():
        b, layer, head, q = bad.nonzero()[0].tolist()
        raise NonFiniteError(
            f"Attention of prompt {b}, layer index {layer}, head {head}, query {q} sums to {float(sums[b, layer, head, q]):.4g}, "
            "not 1: the weights or activations hold NaN/inf (TransformerLens turns NaN attention into zeros). "
            f"Check the checkpoint and use float32 (allowed deviation here: {atol:.2g})."
        )


def query_positions(lengths: Int[Tensor, " batch"], query: int) -> Int[Tensor, " batch"]:
    """Per prompt, the absolute index of ``query`` (negative counts from each prompt's end)."""
    lengths = lengths.long()
    pos = torch.where(torch.tensor(query) < 0, lengths + query, torch.full_like(lengths, query))
    bad = ((pos < 0) | (pos >= lengths)).nonzero().flatten().tolist()
    if bad:
        i = bad[0]
        raise MechinterpError(
            f"Query position {query} falls outside prompt {i}, which has {int(lengths[i])} tokens; "
            "pass an index inside every prompt (e.g. -1 for each prompt's last token)."
        )
    return pos
