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

from mechinterp.core.validation import check_token_ids
from mechinterp.errors import (
    EmptyInputError,
    LeadingSpaceError,
    MultiTokenAnswerError,
    PromptTooLongError,
    ShapeMismatchError,
    TokenizationError,
    UnknownTokenError,
)

__all__ = ["Tokenized", "tokenize", "answer_tokens", "check_same_lengths", "tokenizer_kind"]

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
    name: str = "prompts",
) -> Tokenized:
    """Tokenise one prompt or a list of prompts for ``model``, checking them first.

    Args:
        model: a ``HookedTransformer`` with a tokenizer (not needed for token tensors).
        prompts: a string, a list of strings, or token ids ``[batch, pos]`` / ``[pos]``
            (token tensors are taken as they are, unpadded).
        prepend_bos: as in TransformerLens; ``None`` uses the model's default.
        padding_side: where to pad shorter prompts.
        name: the caller's argument name, for error messages.

    Returns:
        A :class:`Tokenized` batch.

    Raises:
        EmptyInputError: no prompts, or an empty prompt.
        PromptTooLongError: a prompt longer than the model's ``n_ctx``.
        TokenizationError: token ids that are not integers or not in ``[0, d_vocab)``.

    Example:
        >>> batch = tokenize(model, ["The capital of France is", "The capital of Peru is"])  # doctest: +SKIP
        >>> batch.tokens.shape  # doctest: +SKIP
        torch.Size([2, 6])
    """
    n_ctx = model.cfg.n_ctx
    if isinstance(prompts, Tensor):
        tokens = check_token_ids(model, prompts, name)
        if tokens.shape[1] > n_ctx:
            raise PromptTooLongError(
                f"{name}: the token input has {tokens.shape[1]} positions but the model's context is n_ctx={n_ctx}. "
                "Shorten or split the input."
            )
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


def tokenizer_kind(model: Any) -> Literal["word", "subword"]:
    """``"word"`` for a word-level tokenizer (the zoo's), else ``"subword"`` (BPE, SentencePiece).

    A word-level tokenizer splits text on whitespace and maps every unknown word to
    ``<unk>``; ``" Paris"`` and ``"Paris"`` are the same token there. Sub-word tokenizers
    never need ``<unk>`` but tell ``" Paris"`` from ``"Paris"`` and split rare words into
    pieces. Tasks write their prompts for the kind (see :mod:`mechinterp.tasks.language`).

    Args:
        model: a ``HookedTransformer`` with a tokenizer, or a Hugging Face tokenizer.

    Example:
        >>> tokenizer_kind(mechinterp.load("zoo:toy-lm"))  # doctest: +SKIP
        'word'
    """
    tok = getattr(model, "tokenizer", model)
    if tok is None:
        raise TokenizationError("This model has no tokenizer: there is no tokenizer kind to ask about.")
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None and type(backend.model).__name__ == "WordLevel":
        return "word"
    return "subword"


def _unknown(tok: Any, answer: str, ids: list[int]) -> str | None:
    """The error message when ``answer`` tokenises to ``<unk>`` (and is not ``<unk>`` itself)."""
    unk = getattr(tok, "unk_token_id", None)
    if unk is None or unk not in ids or (tok.unk_token or "") in answer:
        return None
    import difflib

    words = [w for w in answer.split() if tok.convert_tokens_to_ids(w) == unk] or [answer.strip()]
    vocab = [w for w in tok.get_vocab() if w.isprintable()]
    near = {w: difflib.get_close_matches(w, vocab, n=3) for w in words}
    hint = "; ".join(f"{w!r}: closest known {near[w]}" for w in words if near[w])
    return (
        f"The answer {answer!r} is not in this tokenizer's vocabulary: {words} becomes {tok.unk_token!r} "
        f"(id {unk}), so a metric on it would measure the logit of {tok.unk_token!r}, not your answer. "
        f"Check the spelling{' (' + hint + ')' if hint else ''}, or use a word the model knows."
    )


def answer_tokens(
    model: Any, answers: str | Sequence[str], *, check_leading_space: bool = True
) -> Int[Tensor, " batch"]:
    """Token ids of single-token answers (``" Paris"``), checked to be one known token each.

    Three checks, each a :class:`~mechinterp.errors.TokenizationError` subclass whose
    message says what to pass instead:

    * several tokens: :class:`~mechinterp.errors.MultiTokenAnswerError`, showing the pieces;
    * a word that a word-level tokenizer maps to ``<unk>`` (a misspelling would otherwise
      silently score ``logit('<unk>')``): :class:`~mechinterp.errors.UnknownTokenError`;
    * on a sub-word tokenizer, a word without a leading space (``"Paris"``) whose spaced
      form (``" Paris"``) is a different single token: after a prompt that ends in a word
      the model continues with the spaced form, so :class:`~mechinterp.errors.LeadingSpaceError`
      names it. Only answers that start with a letter are checked (digits after ``"17"``,
      punctuation and answers that start with a space pass); pass
      ``check_leading_space=False`` to score the no-space token on purpose (after a quote
      or a newline).

    Args:
        model: a ``HookedTransformer`` with a tokenizer.
        answers: one answer or a list of answers.
        check_leading_space: raise on the no-space form of a word (see above).

    Raises:
        EmptyInputError: no answers.
        MultiTokenAnswerError, UnknownTokenError, LeadingSpaceError: see above.

    Example:
        >>> answer_tokens(model, [" Paris", " Lima"])  # doctest: +SKIP
        tensor([7042, 40781])
        >>> answer_tokens(model, "Paris")  # doctest: +SKIP
        LeadingSpaceError: The answer 'Paris' (token 38634) and ' Paris' (token 7042) are different tokens ...
    """
    if isinstance(answers, str):
        answers = [answers]
    answers = list(answers)
    if not answers:
        raise EmptyInputError("The answer list is empty.")
    tok = model.tokenizer
    if tok is None:
        raise TokenizationError("This model has no tokenizer: pass answer token ids instead of strings.")
    subword = tokenizer_kind(model) == "subword"
    ids = []
    for answer in answers:
        if not isinstance(answer, str) or not answer:
            raise TokenizationError(f"Answer {answer!r} is not a non-empty string.")
        toks = model.to_tokens(answer, prepend_bos=False)[0].tolist()
        message = _unknown(tok, answer, toks)
        if message:
            raise UnknownTokenError(message)
        spaced = None
        if subword and answer[0].isalpha():
            spaced_ids = model.to_tokens(" " + answer, prepend_bos=False)[0].tolist()
            spaced = spaced_ids[0] if len(spaced_ids) == 1 else None
        if len(toks) != 1:
            pieces = [tok.decode([t]) for t in toks]
            hint = (
                f"{(' ' + answer)!r} (with a leading space) is one token ({spaced}): pass that"
                if spaced is not None
                else "Pass a single-token answer (often with a leading space, ' Paris')"
            )
            raise MultiTokenAnswerError(
                f"The answer {answer!r} is {len(toks)} tokens for this tokenizer: {pieces}. {hint}, or use a "
                "multi-token target (e.g. the log-probability of the whole continuation)."
            )
        if check_leading_space and spaced is not None and spaced != toks[0]:
            raise LeadingSpaceError(
                f"The answer {answer!r} (token {toks[0]}) and {(' ' + answer)!r} (token {spaced}) are different "
                f"tokens for this tokenizer; after a prompt that ends in a word the model continues with "
                f"{(' ' + answer)!r}. Pass {(' ' + answer)!r}, or pass check_leading_space=False if you mean the "
                "token without a space (e.g. after a quote or a newline)."
            )
        ids.append(toks[0])
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
