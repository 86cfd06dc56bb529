"""Tokenisation helpers: prompt batches with lengths and masks, single-token answers.

Every method that takes text goes through :func:`tokenize`, so bad input fails the same
way everywhere: empty lists and empty prompts, prompts longer than ``n_ctx`` and
multi-token answers each raise a :class:`~mechinterp.errors.MechinterpError` that says
what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Int
from torch import Tensor

from mechinterp.errors import EmptyInputError, MultiTokenAnswerError, PromptTooLongError, ShapeMismatchError, TokenizationError

__all__ = ["Tokenized", "tokenize", "answer_tokens", "check_same_lengths"]

Prompts = str | Sequence[str] | Int[Tensor, "batch pos"] | Int[Tensor, " pos"]


@dataclass(frozen=True)
class Tokenized:
    """A padded batch of token ids with what is needed to use it correctly.

    Attributes:
        tokens: ``[batch, pos]`` token ids, padded to the longest prompt.
        attention_mask: ``[batch, pos]``, 1 for real tokens, 0 for padding.
        lengths: real tokens per prompt.
        padding_side: ``"right"`` or ``"left"``.
    """

    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    lengths: Int[Tensor, " batch"]
    padding_side: Literal["left", "right"] = "right"

    @property
    def last_pos(self) -> Int[Tensor, " batch"]:
        """Index of each prompt's last real token."""
        if self.padding_side == "left":
            return torch.full_like(self.lengths, self.tokens.shape[1] - 1)
        return self.lengths - 1

    def __len__(self) -> int:
        return self.tokens.shape[0]


def tokenize(
    model: Any,
    prompts: Prompts,
    *,
    prepend_bos: bool | None = None,
    padding_side: Literal["left", "right"] = "right",
) -> Tokenized:
    """Tokenise one prompt or a list of prompts for ``model``, checking them first.

    Args:
        model: a ``HookedTransformer`` with a tokenizer (not needed for token tensors).
        prompts: a string, a list of strings, or token ids ``[batch, pos]`` / ``[pos]``
            (token tensors are taken as they are, unpadded).
        prepend_bos: as in TransformerLens; ``None`` uses the model's default.
        padding_side: where to pad shorter prompts.

    Returns:
        A :class:`Tokenized` batch.

    Raises:
        EmptyInputError: no prompts, or an empty prompt.
        PromptTooLongError: a prompt longer than the model's ``n_ctx``.

    Example:
        >>> batch = tokenize(model, ["The capital of France is", "The capital of Peru is"])  # doctest: +SKIP
        >>> batch.tokens.shape  # doctest: +SKIP
        torch.Size([2, 6])
    """
    n_ctx = model.cfg.n_ctx
    if isinstance(prompts, Tensor):
        tokens = prompts.unsqueeze(0) if prompts.ndim == 1 else prompts
        if tokens.ndim != 2 or tokens.numel() == 0:
            raise EmptyInputError(f"Token input must be a non-empty [batch, pos] tensor, got shape {tuple(prompts.shape)}.")
        if tokens.dtype not in (torch.int64, torch.int32):
            raise TokenizationError(f"Token ids must be integers, got dtype {tokens.dtype}.")
        if tokens.shape[1] > n_ctx:
            raise PromptTooLongError(
                f"The token input has {tokens.shape[1]} positions but the model's context is n_ctx={n_ctx}. "
                "Shorten or split the input."
            )
        tokens = tokens.long()
        lengths = torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long)
        return Tokenized(tokens, torch.ones_like(tokens), lengths, padding_side)
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise EmptyInputError("The prompt list is empty: pass at least one prompt.")
    if model.tokenizer is None:
        raise TokenizationError("This model has no tokenizer: pass token ids as a [batch, pos] tensor instead of text.")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TokenizationError(f"Prompt {i} is a {type(prompt).__name__}, not a string.")
        if not prompt.strip():
            raise EmptyInputError(f"Prompt {i} is empty: every prompt needs at least one token.")
    rows = [model.to_tokens(p, prepend_bos=prepend_bos, truncate=False)[0] for p in prompts]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    too_long = [(i, int(n)) for i, n in enumerate(lengths) if n > n_ctx]
    if too_long:
        i, n = too_long[0]
        raise PromptTooLongError(
            f"Prompt {i} has {n} tokens but the model's context is n_ctx={n_ctx} "
            f"({len(too_long)} prompt(s) too long). Shorten them or split them into windows."
        )
    pad_id = model.tokenizer.pad_token_id
    if pad_id is None:
        pad_id = model.tokenizer.eos_token_id if model.tokenizer.eos_token_id is not None else 0
    width = int(lengths.max())
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if padding_side == "right":
            tokens[i, : len(row)], mask[i, : len(row)] = row, 1
        else:
            tokens[i, width - len(row) :], mask[i, width - len(row) :] = row, 1
    return Tokenized(tokens, mask, lengths, padding_side)


def answer_tokens(model: Any, answers: str | Sequence[str]) -> Int[Tensor, " batch"]:
    """Token ids of single-token answers (``" Paris"``), checked to be one token each.

    Raises:
        EmptyInputError: no answers.
        MultiTokenAnswerError: an answer that is several tokens; the message shows how the
            tokenizer splits it and what to do instead.

    Example:
        >>> answer_tokens(model, [" Paris", " Lima"])  # doctest: +SKIP
        tensor([412, 388])
    """
    if isinstance(answers, str):
        answers = [answers]
    answers = list(answers)
    if not answers:
        raise EmptyInputError("The answer list is empty.")
    ids = []
    for answer in answers:
        toks = model.to_tokens(answer, prepend_bos=False)[0]
        if len(toks) != 1:
            pieces = [model.tokenizer.decode([int(t)]) for t in toks]
            raise MultiTokenAnswerError(
                f"The answer {answer!r} is {len(toks)} tokens for this tokenizer: {pieces}. Pass a "
                "single-token answer (often with a leading space, ' Paris'), or use a multi-token "
                "target (e.g. the log-probability of the whole continuation)."
            )
        ids.append(int(toks[0]))
    return torch.tensor(ids, dtype=torch.long)


def check_same_lengths(clean: Tokenized, corrupted: Tokenized) -> None:
    """Raise :class:`ShapeMismatchError` unless clean and corrupted prompts align token by token."""
    if clean.tokens.shape[0] != corrupted.tokens.shape[0]:
        raise ShapeMismatchError(
            f"{clean.tokens.shape[0]} clean prompts but {corrupted.tokens.shape[0]} corrupted ones: pair them one to one."
        )
    bad = (clean.lengths != corrupted.lengths).nonzero().flatten().tolist()
    if bad:
        i = bad[0]
        raise ShapeMismatchError(
            f"Clean and corrupted prompt {i} have different token lengths ({int(clean.lengths[i])} vs "
            f"{int(corrupted.lengths[i])}); {len(bad)} pair(s) differ. Patching aligns positions, so "
            "corruptions must keep the token count (replace tokens one for one)."
        )
