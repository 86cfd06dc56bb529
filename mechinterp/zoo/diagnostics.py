"""Mechanism checks for induction models: head scores, repeated-segment loss, head ablation.

An induction circuit has two parts (Olsson et al., 2022). A *previous-token head* in an
early layer moves each token's identity to the next position; an *induction head* in a
later layer uses that (K-composition) to attend from the current token ``x`` to the token
right after an earlier ``x``, and copies it. The functions here measure both on
``[BOS] + A + A`` sequences of random tokens ``A``:

* :func:`previous_token_scores` — mean attention from position ``i`` to ``i - 1``;
* :func:`induction_scores` — mean attention from a token in the second copy to the token
  after its occurrence in the first copy (the diagonal at offset ``-(len(A) - 1)``);
* :func:`repeated_loss` — next-token loss on the predictable part of the second copy,
  optionally with heads zero-ablated (:func:`ablate_heads_hooks`).

A low loss alone proves nothing: a model trained on fixed-period repeats can reach it with
a positional shortcut and no induction heads (see DESIGN.md). Check the scores and the
ablations too.

Example:
    >>> import mechinterp
    >>> from mechinterp.zoo import diagnostics as dg
    >>> model = mechinterp.load("zoo:attn-only-2l")
    >>> tokens = dg.repeated_tokens(model, batch=32, seg_len=20, seed=0)
    >>> bool(dg.induction_scores(model, tokens, seg_len=20).max() > 0.4)
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.core.intervention import Intervention
from mechinterp.errors import MechinterpError

__all__ = [
    "parse_head",
    "word_token_ids",
    "repeated_tokens",
    "previous_token_scores",
    "induction_scores",
    "repeated_loss",
    "ablate_heads_hooks",
]

_SPECIAL = {"<pad>", "<bos>", "<unk>"}


def parse_head(name: str) -> tuple[int, int]:
    """``"L1H2"`` -> ``(1, 2)``.

    Example:
        >>> parse_head("L1H2")
        (1, 2)
    """
    try:
        layer, head = name.upper().removeprefix("L").split("H")
        return int(layer), int(head)
    except ValueError as err:
        raise MechinterpError(f"Head names look like 'L1H2' (layer 1, head 2); got {name!r}.") from err


def word_token_ids(model: Any) -> Int[Tensor, " n_words"]:
    """The ids of a zoo word tokenizer's plain words (every id except ``<pad> <bos> <unk>``).

    Models without a tokenizer get every id in ``range(d_vocab)``.
    """
    tok = model.tokenizer
    if tok is None:
        return torch.arange(model.cfg.d_vocab)
    vocab = tok.get_vocab()
    special = set(tok.all_special_ids) | {vocab[s] for s in _SPECIAL if s in vocab}
    return torch.tensor([i for i in range(model.cfg.d_vocab) if i not in special])


def repeated_tokens(
    model: Any,
    batch: int = 64,
    seg_len: int = 20,
    seed: int = 0,
    bos: int | None = None,
) -> Int[Tensor, "batch pos"]:
    """``[BOS] + A + A`` with ``A`` ``seg_len`` distinct random words (distinct so that
    every token of the second copy has exactly one earlier occurrence).

    Args:
        model: a model with a word tokenizer (see :func:`word_token_ids`).
        batch: number of sequences.
        seg_len: length of ``A``; the sequence has ``1 + 2 * seg_len`` tokens.
        seed: seed of the random draw (deterministic).
        bos: the BOS id; the tokenizer's ``bos_token_id`` (else 1) if omitted.

    Returns:
        Token ids, ``[batch, 1 + 2 * seg_len]``.
    """
    words = word_token_ids(model)
    if seg_len < 2 or seg_len > len(words):
        raise MechinterpError(
            f"seg_len must be between 2 and the {len(words)} words of the vocabulary; got {seg_len}."
        )
    if 1 + 2 * seg_len > model.cfg.n_ctx:
        raise MechinterpError(
            f"1 + 2 * seg_len = {1 + 2 * seg_len} exceeds n_ctx = {model.cfg.n_ctx}; lower seg_len."
        )
    if bos is None:
        bos = getattr(model.tokenizer, "bos_token_id", None) or 1
    gen = torch.Generator().manual_seed(seed)
    picks = torch.stack([torch.randperm(len(words), generator=gen)[:seg_len] for _ in range(batch)])
    seg = words[picks]  # [batch, seg_len]
    return torch.cat([torch.full((batch, 1), bos), seg, seg], dim=1)


def _patterns(
    model: Any, tokens: Int[Tensor, "batch pos"]
) -> list[Float[Tensor, "batch head_index query_pos key_pos"]]:
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    return [cache[n] for n in names]


def previous_token_scores(model: Any, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "layer head_index"]:
    """Mean attention from each position ``i >= 1`` to ``i - 1``, per head.

    Example:
        >>> scores = previous_token_scores(model, tokens)  # doctest: +SKIP
        >>> scores.shape  # [n_layers, n_heads]  # doctest: +SKIP
    """
    out = []
    for pattern in _patterns(model, tokens):  # [batch, head, q, k]
        sub = pattern.diagonal(offset=-1, dim1=-2, dim2=-1)  # [batch, head, pos - 1]
        out.append(sub.mean(dim=(0, -1)))
    return torch.stack(out)


def induction_scores(
    model: Any, tokens: Int[Tensor, "batch pos"], seg_len: int
) -> Float[Tensor, "layer head_index"]:
    """Mean attention from a second-copy token to the token after its first occurrence.

    Args:
        model: the model.
        tokens: ``[BOS] + A + A`` sequences (:func:`repeated_tokens`); ``len(A) = seg_len``.
        seg_len: the length of ``A``.

    Returns:
        ``[n_layers, n_heads]`` scores in ``[0, 1]``; an ideal induction head scores 1.
    """
    if tokens.shape[1] != 1 + 2 * seg_len:
        raise MechinterpError(
            f"tokens must be [BOS] + A + A with len(A) = {seg_len}: {1 + 2 * seg_len} positions, "
            f"got {tokens.shape[1]}. Build them with repeated_tokens(model, seg_len={seg_len})."
        )
    out = []
    for pattern in _patterns(model, tokens):  # [batch, head, q, k]
        diag = pattern.diagonal(offset=-(seg_len - 1), dim1=-2, dim2=-1)  # q = k + seg_len - 1
        out.append(diag[..., 2:].mean(dim=(0, -1)))  # queries 1 + seg_len ... 2 * seg_len
    return torch.stack(out)


def ablate_heads_hooks(
    heads: Iterable[str | tuple[int, int]],
    means: dict[int, Float[Tensor, "head_index d_head"]] | None = None,
) -> list[tuple[str, Any]]:
    """Forward hooks that replace heads' outputs ``z`` by zero (or by ``means[layer][head]``).

    Use with ``model.run_with_hooks(tokens, fwd_hooks=ablate_heads_hooks(["L1H2"]))``.
    """
    by_layer: dict[int, list[int]] = {}
    for h in heads:
        layer, head = parse_head(h) if isinstance(h, str) else h
        by_layer.setdefault(layer, []).append(head)

    # z: [batch, pos, head_index, d_head]; a mean [head_index, d_head] broadcasts over batch and positions
    return [
        Intervention.at(f"blocks.{layer}.attn.hook_z", 0.0 if means is None else means[layer], heads=idx).fwd_hook()
        for layer, idx in by_layer.items()
    ]


def repeated_loss(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    seg_len: int,
    ablate: Sequence[str | tuple[int, int]] = (),
) -> float:
    """Mean next-token loss (nats) on the predictable part of the second copy of ``A``.

    Positions ``1 + seg_len .. 2 * seg_len - 1`` predict ``A[1:]``; the first token of the
    second copy cannot be predicted and is left out.

    Args:
        model: the model.
        tokens: ``[BOS] + A + A`` (:func:`repeated_tokens`).
        seg_len: the length of ``A``.
        ablate: heads to zero-ablate, e.g. ``["L0H1", "L1H3"]``.
    """
    hooks = ablate_heads_hooks(ablate) if ablate else []
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)  # [batch, pos, d_vocab]
    logp = logits[:, 1 + seg_len : 2 * seg_len].log_softmax(-1)
    target = tokens[:, 2 + seg_len :]
    return -logp.gather(-1, target[..., None]).mean().item()
