"""What an attribution explains: a scalar (or a few) computed from the model's logits.

A *target* turns the prompt into the full token sequence the model reads (the prompt, plus
a forced continuation for generation attribution), names the positions whose logits it
needs, and scores those logits. Every method calls ``score`` on the logits at
``positions`` only, so the unembedding (the largest matrix in a small model) runs on the
few positions that matter.

* :class:`NextToken` — the logit, log-probability or probability of one answer token.
* :class:`Contrast` — the logit (or log-prob) difference between an answer and a wrong one.
* :class:`Label` — a classification label token, log-probability renormalised over the
  label set (``" positive"`` vs ``" negative"``).
* :class:`Continuation` — a forced multi-token continuation, teacher-forced in one pass:
  one target per continuation token (its log-probability), giving an output × input matrix.
* :class:`Generate` — greedy generation of ``n_tokens`` tokens, then as :class:`Continuation`.
* :class:`MetricTarget` — any :data:`~mechinterp.core.metrics.Metric` (a function of the full
  logits ``[batch, pos, d_vocab]``). Formerly ``Metric``, which now names the function type
  in every family; the old class name still works for one release, with a DeprecationWarning.

Plain values are converted by :func:`as_target`: a string or token id is a
:class:`NextToken`, a pair is a :class:`Contrast`, a callable is a :class:`MetricTarget`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.core.deprecation import warn_renamed
from mechinterp.core.tokens import answer_tokens
from mechinterp.core.validation import check_ids
from mechinterp.errors import EmptyInputError, MechinterpError, PromptTooLongError, ShapeMismatchError, TokenizationError

__all__ = [
    "AbstractTarget",
    "BoundTarget",
    "NextToken",
    "Contrast",
    "Label",
    "Continuation",
    "Generate",
    "MetricTarget",
    "as_target",
]

Kind = Literal["logit", "logprob", "prob"]
_KINDS = ("logit", "logprob", "prob")


@dataclass(frozen=True)
class BoundTarget:
    """A target resolved against one prompt.

    Attributes:
        tokens: ``[pos]`` the full sequence the model reads (prompt, then any continuation).
        n_prompt: how many leading positions are the prompt (the attributed inputs).
        positions: positions whose logits ``score`` needs; ``None`` means all of them.
        labels: one label per target (``n_targets``).
        score: ``logits [batch, len(positions), d_vocab] -> [batch, n_targets]``; with
            ``columns`` set, ``score`` receives only those logit columns, in that order.
        columns: vocabulary ids whose logits ``score`` needs; ``None`` means all of them.
            Targets that read a few logits (a next-token logit, a logit difference, a label
            set) name them, and only those columns of the unembedding are computed.
    """

    tokens: Int[Tensor, " pos"]
    n_prompt: int
    positions: list[int] | None
    labels: list[str]
    score: Callable[[Tensor], Tensor] = field(repr=False)
    columns: list[int] | None = None

    @property
    def n_targets(self) -> int:
        return len(self.labels)


def _token_id(model: Any, answer: str | int) -> int:
    if isinstance(answer, (int, torch.Tensor)) and not isinstance(answer, bool):
        ids = check_ids(answer, model.cfg.d_vocab, "target")
        if ids.numel() != 1:
            raise TokenizationError(f"target: one token id is needed here, got {ids.numel()} ({ids[:4].tolist()}).")
        return int(ids[0])
    if not isinstance(answer, str) or not answer.strip():
        raise EmptyInputError(f"The target answer {answer!r} is empty: pass a token string such as ' Paris' or a token id.")
    return int(answer_tokens(model, answer)[0])


def _piece(model: Any, idx: int) -> str:
    return model.tokenizer.decode([idx]) if model.tokenizer is not None else str(idx)


def _read(logits: Tensor, kind: str) -> Tensor:
    if kind == "logit":
        return logits
    if kind == "logprob":
        return logits.log_softmax(-1)
    return logits.softmax(-1)


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise MechinterpError(f"Unknown target kind {kind!r}; use one of {_KINDS}.")


class AbstractTarget(ABC):
    """Base of all targets: :meth:`bind` resolves the target against a prompt's tokens."""

    @abstractmethod
    def bind(self, model: Any, prompt_tokens: Int[Tensor, " pos"]) -> BoundTarget:
        """Resolve against ``prompt_tokens`` (``[pos]``, BOS included where the model uses it)."""


@dataclass(frozen=True)
class NextToken(AbstractTarget):
    """The next-token ``kind`` (logit / logprob / prob) of ``answer`` after the prompt.

    Example:
        >>> attribute(model, "The capital of France is", NextToken(" Paris", kind="logprob"))  # doctest: +SKIP
    """

    answer: str | int
    kind: Kind = "logit"

    def bind(self, model: Any, prompt_tokens: Int[Tensor, " pos"]) -> BoundTarget:
        _check_kind(self.kind)
        idx = _token_id(model, self.answer)
        label = f"{self.kind}({_piece(model, idx)!r})"
        if self.kind == "logit":  # one logit column is all the target reads
            return BoundTarget(prompt_tokens, len(prompt_tokens), [len(prompt_tokens) - 1], [label],
                               lambda logits: logits[:, -1, [0]], columns=[idx])
        return BoundTarget(prompt_tokens, len(prompt_tokens), [len(prompt_tokens) - 1], [label],
                           lambda logits: _read(logits[:, -1], self.kind)[:, [idx]])


@dataclass(frozen=True)
class Contrast(AbstractTarget):
    """``kind(answer) - kind(wrong)`` at the next token (logit difference by default)."""

    answer: str | int
    wrong: str | int
    kind: Kind = "logit"

    def bind(self, model: Any, prompt_tokens: Int[Tensor, " pos"]) -> BoundTarget:
        _check_kind(self.kind)
        good, bad = _token_id(model, self.answer), _token_id(model, self.wrong)
        label = f"{self.kind}({_piece(model, good)!r}) - {self.kind}({_piece(model, bad)!r})"
        if self.kind == "logit":  # two logit columns are all the target reads
            return BoundTarget(prompt_tokens, len(prompt_tokens), [len(prompt_tokens) - 1], [label],
                               lambda logits: (logits[:, -1, 0] - logits[:, -1, 1]).unsqueeze(-1), columns=[good, bad])

        def score(logits: Tensor) -> Tensor:
            read = _read(logits[:, -1], self.kind)
            return (read[:, good] - read[:, bad]).unsqueeze(-1)

        return BoundTarget(prompt_tokens, len(prompt_tokens), [len(prompt_tokens) - 1], [label], score)


@dataclass(frozen=True)
class Label(AbstractTarget):
    """A classification label: log-probability of ``label`` renormalised over ``labels``."""

    label: str | int
    labels: Sequence[str | int]

    def bind(self, model: Any, prompt_tokens: Int[Tensor, " pos"]) -> BoundTarget:
        ids = [_token_id(model, lab) for lab in self.labels]
        chosen = _token_id(model, self.label)
        if chosen not in ids:
            raise MechinterpError(f"The label {self.label!r} is not in the label set {list(self.labels)!r}.")
        where = ids.index(chosen)
        label = f"logprob({_piece(model, chosen)!r} | {len(ids)} labels)"
        return BoundTarget(prompt_tokens, len(prompt_tokens), [len(prompt_tokens) - 1], [label],
                           lambda logits: logits[:, -1].log_softmax(-1)[:, [where]], columns=ids)


def _continuation_target(model: Any, prompt_tokens: Tensor, cont: Tensor) -> BoundTarget:
    if cont.numel() == 0:
        raise EmptyInputError("The continuation is empty: pass at least one continuation token.")
    full = torch.cat([prompt_tokens, cont.to(prompt_tokens.device)])
    if len(full) > model.cfg.n_ctx:
        raise PromptTooLongError(
            f"Prompt ({len(prompt_tokens)}) plus continuation ({len(cont)}) is {len(full)} tokens, more than "
            f"n_ctx={model.cfg.n_ctx}. Shorten the prompt or the continuation."
        )
    n = len(prompt_tokens)
    positions = list(range(n - 1, n - 1 + len(cont)))
    ids = cont.long()
    labels = [f"{t}:{_piece(model, int(i))!r}" for t, i in enumerate(ids.tolist())]

    def score(logits: Tensor) -> Tensor:
        logp = logits.log_softmax(-1)  # [batch, n_cont, d_vocab]
        return logp.gather(-1, ids.to(logits.device).view(1, -1, 1).expand(logits.shape[0], -1, 1)).squeeze(-1)

    return BoundTarget(full, n, positions, labels, score)


@dataclass(frozen=True)
class Continuation(AbstractTarget):
    """A forced continuation: one target per continuation token, its log-probability.

    The continuation is teacher-forced: the model reads prompt + continuation once and the
    targets are read at the positions before each continuation token.
    """

    text: str | Sequence[int] | Tensor

    def bind(self, model: Any, prompt_tokens: Int[Tensor, " pos"]) -> BoundTarget:
        if isinstance(self.text, str):
            if not self.text.strip():
                raise EmptyInputError("The continuation text is empty.")
            cont = model.to_tokens(self.text, prepend_bos=False)[0]
        else:
            cont = check_ids(self.text, model.cfg.d_vocab, "Continuation")
            if cont.numel() == 0:
                raise EmptyInputError("The continuation is empty: pass at least one token id.")
        return _continuation_target(model, prompt_tokens, cont.cpu())


@dataclass(frozen=True)
class Generate(AbstractTarget):
    """Greedy-generate ``n_tokens`` tokens, then attribute each of them (teacher-forced)."""

    n_tokens: int = 10

    def bind(self, model: Any, prompt_tokens: Int[Tensor, " pos"]) -> BoundTarget:
        if isinstance(self.n_tokens, bool) or not isinstance(self.n_tokens, int) or self.n_tokens < 1:
            raise EmptyInputError(f"Generate needs n_tokens >= 1 (an integer), got n_tokens={self.n_tokens!r}.")
        if len(prompt_tokens) + self.n_tokens > model.cfg.n_ctx:
            raise PromptTooLongError(
                f"Prompt ({len(prompt_tokens)}) plus {self.n_tokens} generated tokens exceed n_ctx={model.cfg.n_ctx}."
            )
        seq = prompt_tokens.to(model.cfg.device).unsqueeze(0)
        with torch.no_grad():
            for _ in range(self.n_tokens):
                nxt = model(seq)[:, -1].argmax(-1, keepdim=True)
                seq = torch.cat([seq, nxt], dim=1)
        return _continuation_target(model, prompt_tokens, seq[0, len(prompt_tokens):].cpu())


@dataclass(frozen=True)
class MetricTarget(AbstractTarget):
    """A :data:`~mechinterp.core.metrics.Metric` as the target: ``logits [batch, pos, d_vocab] -> [batch]`` (or ``[batch, n]``).

    Example:
        >>> target = MetricTarget(lambda logits: logits[:, -1, 7], name="logit 7")  # doctest: +SKIP
    """

    fn: Callable[[Tensor], Tensor]
    name: str = "metric"

    def bind(self, model: Any, prompt_tokens: Int[Tensor, " pos"]) -> BoundTarget:
        probe = None

        def score(logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
            out = self.fn(logits)
            if out.ndim == 1:
                out = out.unsqueeze(-1)
            if out.ndim != 2 or out.shape[0] != logits.shape[0]:
                raise ShapeMismatchError(
                    f"The metric returned shape {tuple(out.shape)}; it must return [batch] or [batch, n] "
                    f"for logits of batch {logits.shape[0]}."
                )
            return out

        with torch.no_grad():
            probe = score(model(prompt_tokens.unsqueeze(0).to(model.cfg.device)))
        labels = [self.name] if probe.shape[1] == 1 else [f"{self.name}[{i}]" for i in range(probe.shape[1])]
        return BoundTarget(prompt_tokens, len(prompt_tokens), None, labels, score)


def as_target(target: Any) -> AbstractTarget:
    """Turn a plain value into a target: str/int → NextToken, (a, b) → Contrast, callable → MetricTarget.

    Raises:
        MechinterpError: a value that is none of these.
    """
    if isinstance(target, AbstractTarget):
        return target
    if isinstance(target, (str, int)) and not isinstance(target, bool):
        return NextToken(target)
    if isinstance(target, torch.Tensor) and target.numel() == 1:  # one token id; a float id raises when bound
        return NextToken(target)  # type: ignore[arg-type]
    if isinstance(target, tuple) and len(target) == 2:
        return Contrast(*target)
    if callable(target):
        return MetricTarget(target)
    raise MechinterpError(
        f"Cannot use {target!r} as a target. Pass an answer token (' Paris' or an id), a pair (answer, wrong), "
        "a function of the logits, or a target object (NextToken, Contrast, Label, Continuation, Generate, MetricTarget)."
    )


def __getattr__(name: str) -> Any:
    if name == "Metric":  # renamed: "Metric" is the function type in mechinterp.core.metrics
        warn_renamed("mechinterp.attribution.Metric", "mechinterp.attribution.MetricTarget")
        return MetricTarget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
