"""Attention sinks: leaving the first token (or chosen positions) out of attention maps.

Pretrained language models park most of their attention on the first token whatever it is
(Xiao et al., 2023, "Efficient Streaming Language Models with Attention Sinks"): on
SmolLM2-135M, queries past the first token pay it 25–96 % of their attention depending on the
layer, while its value vectors are 3–8x smaller than the other tokens' in most layers — the
attention is parked, not read. Rollout multiplies 30 such layers and ends with all its mass on
the first token (``[1.0, 0, 0, 0, 0]`` on "The capital of France is"), which says nothing
about the prompt. Every map method of this family takes ``sink=``:

* ``None`` (default): nothing excluded; the results of earlier versions, unchanged;
* ``"first"``: position 0 (the BOS token where the model prepends one, else the first word);
* an ``int`` ``>= 0`` or a sequence of them: those positions (present in every prompt).

Rollout and flow then edit each head's pattern ``A`` before fusing heads, for every query
``q`` that is not a sink (sink rows are left as they are), in one of two modes:

* ``"self"`` (default): the attention paid to sinks stays with the query,
  ``A'[q, q] = A[q, q] + Σ_{s∈S} A[q, s]``, ``A'[q, s] = 0`` — attending to a sink is treated
  as the no-op it nearly is, so the layer passes that share of the token through its
  residual path;
* ``"renormalise"``: ``A'[q, s] = 0`` and the row is rescaled to its old total over the
  other keys (TransformerLens's ``exclude_bos``); a row with all of its attention on sinks
  keeps it on the query, as in ``"self"``. On a real model this tends to crown the next
  token as the new sink (SmolLM2: 99.9 % on " capital").

Either way ``Â`` stays row-stochastic and no non-sink output receives any mass from a sink:
``R[q, s] = 0`` for ``q ∉ S``. Gradient-weighted rollout drops the sink columns of its
gradient-weighted attention; head detection zeroes them and scores the rest (TransformerLens's
``exclude_bos`` generalised).

Example:
    >>> import torch
    >>> a = torch.tensor([[[1.0, 0.0, 0.0], [0.8, 0.2, 0.0], [0.6, 0.3, 0.1]]])
    >>> [round(x, 3) for x in exclude_sinks(a, [0], "self")[0, 2].tolist()]
    [0.0, 0.3, 0.7]
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Literal, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.errors import MechinterpError

__all__ = ["Sink", "SinkMode", "SINK_MODES", "resolve_sinks", "exclude_sinks", "sink_share", "sink_note"]

Sink = Union[Literal["first"], int, Sequence[int], None]
SinkMode = Literal["self", "renormalise"]
SINK_MODES = ("self", "renormalise")


def resolve_sinks(sink: Sink, lengths: Int[Tensor, " batch"]) -> list[int]:
    """The sink positions asked for, checked against every prompt's length; ``[]`` for ``None``.

    Example:
        >>> resolve_sinks("first", torch.tensor([4, 6])), resolve_sinks([2, 0], torch.tensor([4]))
        ([0], [0, 2])
    """
    if sink is None:
        return []
    if isinstance(sink, str):
        if sink != "first":
            raise MechinterpError(
                f"sink must be 'first', a position (int >= 0), a list of positions or None; got {sink!r}."
            )
        positions = [0]
    elif isinstance(sink, bool) or not isinstance(sink, (Integral, Sequence, Tensor)):
        raise MechinterpError(
            f"sink must be 'first', a position (int >= 0), a list of positions or None; got {sink!r}."
        )
    else:
        items = [sink] if isinstance(sink, Integral) else (sink.flatten().tolist() if isinstance(sink, Tensor) else list(sink))
        if not items or any(isinstance(p, bool) or not isinstance(p, Integral) or p < 0 for p in items):
            raise MechinterpError(
                f"sink positions are absolute token indices >= 0 (the first token is 0); got {sink!r}. "
                "Pass sink='first' for the first token."
            )
        positions = sorted({int(p) for p in items})
    shortest = int(lengths.min()) if len(lengths) else 0
    if positions[-1] >= shortest:
        raise MechinterpError(
            f"Sink position {positions[-1]} is not in every prompt (the shortest has {shortest} tokens); "
            "pass positions that every prompt has, e.g. sink='first'."
        )
    return positions


def exclude_sinks(
    patterns: Float[Tensor, "... query_pos key_pos"], positions: Sequence[int], mode: SinkMode = "self"
) -> Float[Tensor, "... query_pos key_pos"]:
    """Move each non-sink query's attention off the sink keys (see the module docstring).

    Rows of sink queries and all-zero rows (padding) are returned unchanged; every other row
    keeps its total. A new tensor; ``patterns`` is left alone.
    """
    if mode not in SINK_MODES:
        raise MechinterpError(f"sink_mode must be 'self' or 'renormalise'; got {mode!r}.")
    if not positions:
        return patterns
    n = patterns.shape[-1]
    is_sink = torch.zeros(n, dtype=torch.bool, device=patterns.device)
    is_sink[list(positions)] = True
    cut = ~is_sink[:, None] & is_sink[None, :]  # [query_pos, key_pos]: a non-sink query's sink keys
    mass = (patterns * cut).sum(-1)  # [..., query_pos]: attention parked on sinks
    out = patterns.masked_fill(cut, 0.0)
    if mode == "renormalise":
        rest = out.sum(-1)
        ok = rest > torch.finfo(out.dtype).tiny
        scale = torch.where(ok, (rest + mass) / rest.clamp_min(torch.finfo(out.dtype).tiny), torch.ones_like(rest))
        out = out * scale[..., None]
        mass = torch.where(ok, torch.zeros_like(mass), mass)  # rows with nothing else: keep it on the query
    out.diagonal(dim1=-2, dim2=-1).add_(mass)
    return out


def sink_share(
    scores: Float[Tensor, "batch key_pos"], positions: Sequence[int]
) -> Float[Tensor, " batch"]:
    """Share of each prompt's score mass on ``positions`` (position 0 when empty)."""
    keys = list(positions) or [0]
    total = scores.sum(-1)
    return scores[:, keys].sum(-1) / total.where(total.abs() > 0, torch.ones_like(total))


def sink_note(positions: Sequence[int], mode: str | None, share: float | None, what: str = "mass") -> str:
    """One sentence for the rendering: what was excluded, or a hint when the first token dominates."""
    if positions:
        held = "" if share is None else f"; without exclusion they held {share:.0%} of the {what}"
        how = f", mode {mode!r}" if mode else ""
        return f"Attention sink excluded: position(s) {list(positions)}{how}{held}."
    if share is not None and share >= 0.5:
        return (
            f"Position 0 holds {share:.0%} of the {what}: probably an attention sink, not a reading of the prompt; "
            "pass sink='first' to exclude it."
        )
    return ""
