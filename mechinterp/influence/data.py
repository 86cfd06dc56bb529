"""Training sequences and queries, checked and turned into tensors.

A *training set* is a list of texts, a ``[n, pos]`` token tensor, a list of token-id lists
or a :class:`~mechinterp.core.tokens.Tokenized` batch. Each sequence's training loss is the
summed next-token loss over its real tokens (padding is masked out), as the zoo's training
scripts use.

A *query* is what an influence score explains: a prompt and a target (a token, a pair
``(answer, wrong)`` for a logit difference, or a callable metric of the logits). Its
*measurement* ``m`` is a scalar of the prompt's logits; influence scores say how training on
a sequence moves ``m``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.core.tokens import Tokenized, answer_tokens, tokenize
from mechinterp.errors import EmptyInputError, MechinterpError, PromptTooLongError, TokenizationError
from mechinterp.core.validation import check_ids, check_token_ids

__all__ = ["TrainingSet", "Query", "as_training_set", "as_queries"]


@dataclass(frozen=True)
class TrainingSet:
    """Padded training sequences and which next-token predictions count in the loss.

    Attributes:
        tokens: ``[n, pos]`` token ids (right-padded).
        lengths: ``[n]`` real tokens per sequence.
    """

    tokens: Int[Tensor, "n pos"]
    lengths: Int[Tensor, " n"]

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def loss_mask(self) -> Float[Tensor, "n pos_minus_1"]:
        """1 where position ``t`` predicts a real token ``t + 1``."""
        pos = torch.arange(self.tokens.shape[1] - 1)
        return (pos[None] < (self.lengths[:, None] - 1)).float()


def as_training_set(model: Any, train: Any) -> TrainingSet:
    """Check and tokenise a training set (texts, token tensor, token lists or ``Tokenized``).

    Raises:
        EmptyInputError: no sequences, or a sequence with fewer than two tokens (no prediction).
        PromptTooLongError: a sequence longer than ``n_ctx``.
        TokenizationError: ids outside the vocabulary, or an input of another type.
    """
    if isinstance(train, Tensor):
        check_token_ids(model, train, "train")
    if isinstance(train, TrainingSet):
        return train
    if isinstance(train, Tokenized):
        if train.padding_side != "right":
            raise TokenizationError("Training sequences must be right-padded: tokenize with padding_side='right'.")
        tokens, lengths = train.tokens.long(), train.lengths.long()
    elif isinstance(train, Tensor):
        if train.ndim != 2 or train.numel() == 0:
            raise EmptyInputError(f"Training tokens must be a non-empty [n, pos] tensor, got shape {tuple(train.shape)}.")
        if train.dtype not in (torch.int32, torch.int64):
            raise TokenizationError(f"Training token ids must be integers, got dtype {train.dtype}.")
        tokens = train.long()
        lengths = torch.full((len(tokens),), tokens.shape[1], dtype=torch.long)
        if tokens.shape[1] > model.cfg.n_ctx:
            raise PromptTooLongError(f"Training sequences have {tokens.shape[1]} tokens; the model's n_ctx is {model.cfg.n_ctx}.")
    elif isinstance(train, (list, tuple)) and train and all(isinstance(t, str) for t in train):
        batch = tokenize(model, list(train))
        tokens, lengths = batch.tokens, batch.lengths
    elif isinstance(train, (list, tuple)) and train and all(isinstance(t, (list, tuple)) for t in train):
        if any(len(t) == 0 for t in train):
            raise EmptyInputError("A training sequence is empty: every sequence needs at least two tokens.")
        width = max(len(t) for t in train)
        if width > model.cfg.n_ctx:
            raise PromptTooLongError(f"A training sequence has {width} tokens; the model's n_ctx is {model.cfg.n_ctx}.")
        tokens = torch.zeros(len(train), width, dtype=torch.long)
        for i, row in enumerate(train):
            tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        lengths = torch.tensor([len(t) for t in train], dtype=torch.long)
    elif isinstance(train, (list, tuple)) and not train:
        raise EmptyInputError("The training set is empty: pass at least one sequence.")
    else:
        raise TokenizationError(
            f"Cannot read a training set of type {type(train).__name__}: pass a list of texts, a [n, pos] token "
            "tensor, a list of token-id lists, or a mechinterp Tokenized batch."
        )
    if int(lengths.min()) < 2:
        raise EmptyInputError(
            f"Training sequence {int(lengths.argmin())} has fewer than 2 tokens, so it has no next-token loss; drop it."
        )
    if int(tokens.max()) >= model.cfg.d_vocab or int(tokens.min()) < 0:
        raise TokenizationError(f"Training token ids must lie in [0, {model.cfg.d_vocab}) (the model's d_vocab).")
    return TrainingSet(tokens, lengths)


@dataclass(frozen=True)
class Query:
    """One prompt and the measurement ``m`` of its logits that influence explains.

    Attributes:
        tokens: ``[pos]`` the prompt's tokens.
        label: a readable name (``"prompt -> target"``).
        measure: ``logits [pos, d_vocab] -> scalar``; larger means "more of the behaviour".
    """

    tokens: Int[Tensor, " pos"]
    label: str
    measure: Callable[[Tensor], Tensor] = field(repr=False)


def _single_token(model: Any, answer: str | int) -> int:
    if isinstance(answer, int):
        if not 0 <= answer < model.cfg.d_vocab:
            raise TokenizationError(f"Token id {answer} is outside the vocabulary [0, {model.cfg.d_vocab}).")
        return answer
    if isinstance(answer, str):
        return int(answer_tokens(model, answer)[0])
    raise TokenizationError(f"A query target must be a token string or id, got {type(answer).__name__}.")


def _one_query(model: Any, prompt: Any, target: Any) -> Query:
    if isinstance(prompt, Tensor):
        check_token_ids(model, prompt, "query prompt")
    if isinstance(target, (int, Tensor)):
        check_ids(target, model.cfg.d_vocab, "query target")
    if isinstance(prompt, str):
        tokens = tokenize(model, prompt).tokens[0]
        name = prompt
    elif isinstance(prompt, Tensor) and prompt.ndim == 1 and prompt.numel() > 0:
        tokens = prompt.long()
        name = " ".join(map(str, tokens.tolist()))
    elif isinstance(prompt, (list, tuple)) and prompt and all(isinstance(t, int) for t in prompt):
        tokens = torch.tensor(prompt, dtype=torch.long)
        name = " ".join(map(str, prompt))
    else:
        raise EmptyInputError("A query prompt must be a non-empty string, a 1-D token tensor or a list of token ids.")
    if len(tokens) > model.cfg.n_ctx:
        raise PromptTooLongError(f"The query prompt has {len(tokens)} tokens; the model's n_ctx is {model.cfg.n_ctx}.")
    if callable(target):
        return Query(tokens, f"{name} -> {getattr(target, '__name__', 'metric')}", _checked_metric(target))
    if isinstance(target, (tuple, list)):
        if len(target) != 2:
            raise MechinterpError("A contrast target is a pair (answer, wrong); got a sequence of length " f"{len(target)}.")
        good, bad = _single_token(model, target[0]), _single_token(model, target[1])
        return Query(tokens, f"{name} -> {target[0]!s} vs {target[1]!s}", lambda logits: logits[-1, good] - logits[-1, bad])
    tid = _single_token(model, target)
    return Query(tokens, f"{name} -> {target!s}", lambda logits: logits[-1].log_softmax(-1)[tid])


def _checked_metric(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def measure(logits: Tensor) -> Tensor:
        out = fn(logits)
        if not isinstance(out, Tensor) or out.numel() != 1:
            raise MechinterpError(
                "A query metric must return a scalar tensor from the prompt's logits [pos, d_vocab]; "
                f"got {type(out).__name__}{'' if not isinstance(out, Tensor) else tuple(out.shape)}."
            )
        return out.reshape(())

    return measure


def as_queries(model: Any, queries: Any) -> list[Query]:
    """Queries from ``(prompt, target)`` pairs (or one pair, or :class:`Query` objects).

    A target is a token (``" Paris"`` or an id: its log-probability at the last position), a
    pair ``(answer, wrong)`` (their logit difference) or a callable ``logits [pos, d_vocab] ->
    scalar`` (a task metric).

    Raises:
        EmptyInputError: no queries.
        TokenizationError: a target that is not one token.
    """
    if isinstance(queries, Query):
        return [queries]
    if isinstance(queries, tuple) and len(queries) == 2 and not isinstance(queries[0], (tuple, Query)):
        queries = [queries]
    queries = list(queries) if isinstance(queries, (list, tuple)) else None  # type: ignore[assignment]
    if not queries:
        raise EmptyInputError("No queries: pass (prompt, target) pairs, e.g. [('the capital of France is', ' Paris')].")
    out = []
    for q in queries:
        if isinstance(q, Query):
            out.append(q)
        elif isinstance(q, (tuple, list)) and len(q) == 2:
            out.append(_one_query(model, q[0], q[1]))
        else:
            raise MechinterpError(f"A query is a (prompt, target) pair or a Query; got {q!r}.")
    return out
