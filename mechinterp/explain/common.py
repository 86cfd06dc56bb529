"""Helpers shared by the explanation methods: prompts to tokens, token names, answer ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from mechinterp.core.tokens import answer_tokens, tokenize
from mechinterp.errors import EmptyInputError, MechinterpError, TokenizationError

__all__ = ["one_prompt", "token_strs", "token_id", "token_ids", "special_ids", "piece"]


def one_prompt(model: Any, prompt: str | Tensor, what: str) -> Int[Tensor, " pos"]:
    """``[pos]`` token ids of one prompt (BOS prepended as the model does for text)."""
    if isinstance(prompt, (list, tuple)):
        raise MechinterpError(f"{what} explains one prompt at a time: pass a string or a [pos] token tensor, "
                              "and loop over a list of prompts.")
    if isinstance(prompt, str) and not prompt.strip():
        raise EmptyInputError(f"{what}: the prompt is empty; pass at least one token of text.")
    if isinstance(prompt, Tensor) and prompt.ndim == 2:
        if prompt.shape[0] != 1:
            raise MechinterpError(f"{what} explains one prompt at a time: pass a [pos] or [1, pos] token tensor.")
        prompt = prompt[0]
    return tokenize(model, prompt).tokens[0].cpu()


def piece(model: Any, idx: int) -> str:
    """The string of one token id."""
    return model.tokenizer.decode([int(idx)]) if model.tokenizer is not None else str(int(idx))


def token_strs(model: Any, tokens: Tensor) -> list[str]:
    """One string per token id."""
    return [piece(model, int(t)) for t in tokens]


def token_id(model: Any, answer: str | int) -> int:
    """The id of one single-token answer (a string such as ``" Paris"`` or an id)."""
    if isinstance(answer, (int, Tensor)) and not isinstance(answer, bool):
        idx = int(answer)
        if not 0 <= idx < model.cfg.d_vocab:
            raise TokenizationError(f"Token id {idx} is outside the vocabulary (0..{model.cfg.d_vocab - 1}).")
        return idx
    if not isinstance(answer, str) or not answer.strip():
        raise EmptyInputError(f"The answer {answer!r} is empty: pass a token string such as ' Paris' or a token id.")
    return int(answer_tokens(model, answer)[0])


def token_ids(model: Any, answers: Sequence[str | int] | None, what: str) -> list[int] | None:
    """Ids of a list of single-token answers (``None`` stays ``None``), at least two, no repeats."""
    if answers is None:
        return None
    if isinstance(answers, (str, int)):
        raise MechinterpError(f"{what} must be a list of answers (e.g. [' positive', ' negative']), got {answers!r}.")
    ids = [token_id(model, a) for a in answers]
    if len(set(ids)) < 2:
        raise MechinterpError(f"{what} needs at least two different answer tokens, got {list(answers)!r}.")
    return ids


def special_ids(model: Any) -> set[int]:
    """Ids of the tokenizer's special tokens (BOS, EOS, PAD, UNK and the like)."""
    tok = model.tokenizer
    if tok is None:
        return set()
    ids = set(getattr(tok, "all_special_ids", []) or [])
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        value = getattr(tok, name, None)
        if value is not None:
            ids.add(int(value))
    return {i for i in ids if 0 <= i < model.cfg.d_vocab}


def bos_position(model: Any, tokens: Tensor) -> bool:
    """Whether position 0 is a BOS token the model prepended."""
    tok = model.tokenizer
    bos = getattr(tok, "bos_token_id", None) if tok is not None else None
    return bool(bos is not None and len(tokens) and int(tokens[0]) == bos and model.cfg.default_prepend_bos)


def as_list(values: Any) -> list[Any]:
    """A tensor or sequence as a plain list."""
    if isinstance(values, Tensor):
        return values.tolist()
    return list(values)


def ensure_1d(values: Tensor, n: int, what: str) -> Tensor:
    values = torch.as_tensor(values)
    if values.ndim != 1 or len(values) != n:
        raise MechinterpError(f"{what} must have one value per token ({n}), got shape {tuple(values.shape)}.")
    return values
