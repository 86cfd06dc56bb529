"""The task object and the task registry.

A *task* is a batch of clean prompts, corrupted prompts of the same token length, the
right and wrong answer per prompt, a default metric and **ground truth**: what a correct
attribution, probe or circuit method must find. Task generators register themselves with
:func:`register`; users call :func:`mechinterp.tasks.load`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.errors import MechinterpError

__all__ = ["Task", "GroundTruth", "register", "names", "load", "logit_diff_metric"]


@dataclass(frozen=True)
class GroundTruth:
    """What is known by construction about how a task is solved.

    Attributes:
        positions: per prompt, the input token positions that determine the answer
            (what an attribution method should rank highest).
        labels: concept labels per prompt for probing, ``{"sentiment": [1, 0, ...]}``.
        circuit: the reference circuit where known, as a JSON-able dict with keys
            ``nodes`` (e.g. ``"L0H3"``, ``"MLP1"``, ``"embed"``, ``"logits"``), ``edges``
            (pairs of node names; receiving heads may carry ``.q/.k/.v``), and ``source``
            (how it was established: "construction" or "exhaustive patching").
    """

    positions: list[list[int]] = field(default_factory=list)
    labels: dict[str, list[Any]] = field(default_factory=dict)
    circuit: dict[str, Any] | None = None


def logit_diff_metric(
    logits: Float[Tensor, "batch pos d_vocab"],
    correct: Int[Tensor, " batch"],
    wrong: Int[Tensor, " batch"],
    answer_pos: Int[Tensor, " batch"],
) -> Float[Tensor, " batch"]:
    """Logit of the correct answer minus the wrong one, at each prompt's answer position."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    final = logits[rows, answer_pos.to(logits.device)]
    return final[rows, correct.to(logits.device)] - final[rows, wrong.to(logits.device)]


@dataclass(frozen=True)
class Task:
    """A batch of prompts with corruptions, answers, a metric and ground truth.

    Attributes:
        name: the registered task name.
        clean_prompts / corrupted_prompts: the texts (BOS not included).
        clean_tokens / corrupted_tokens: ``[batch, pos]`` token ids as the model sees them
            (BOS prepended where the model uses one, right-padded with the pad token);
            corrupted has the same shape and the same per-prompt length as clean.
        lengths: tokens per prompt, padding excluded.
        answer_pos: the position whose next-token logits give the answer (``lengths - 1``).
        correct_answers / wrong_answers: answer strings; ``correct_tokens`` /
            ``wrong_tokens`` their single token ids.
        ground_truth: see :class:`GroundTruth`.
        metric_fn: the default metric, ``logits -> [batch]`` (logit difference unless the
            task needs another, such as greater-than's probability difference).
        accuracy_fn: ``logits -> [batch]`` booleans, for tasks where "correct" is not one
            token (greater-than: any year above the start year).
    """

    name: str
    clean_prompts: list[str]
    corrupted_prompts: list[str]
    clean_tokens: Int[Tensor, "batch pos"]
    corrupted_tokens: Int[Tensor, "batch pos"]
    lengths: Int[Tensor, " batch"]
    correct_answers: list[str]
    wrong_answers: list[str]
    correct_tokens: Int[Tensor, " batch"]
    wrong_tokens: Int[Tensor, " batch"]
    ground_truth: GroundTruth = field(default_factory=GroundTruth)
    metric_fn: Callable[[Tensor], Tensor] | None = None
    accuracy_fn: Callable[[Tensor], Tensor] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def answer_pos(self) -> Int[Tensor, " batch"]:
        return self.lengths - 1

    def __len__(self) -> int:
        return len(self.clean_prompts)

    def subset(self, index: Int[Tensor, " k"] | list[int] | slice) -> Task:
        """The task restricted to the prompts at ``index``, as a new :class:`Task`.

        Tokens are trimmed to the longest kept prompt; ground truth and every per-prompt
        field follow the selection.

        Raises:
            MechinterpError: an empty selection, an index out of range, or a task whose
                metric closes over its whole batch (``metric_fn`` / ``accuracy_fn``):
                build a smaller task with ``tasks.load(..., n=...)`` instead.

        Example:
            >>> small = task.subset(range(8))  # doctest: +SKIP
        """
        import dataclasses

        if isinstance(index, slice):
            idx = list(range(len(self)))[index]
        else:
            idx = torch.as_tensor(index if isinstance(index, Tensor) else list(index), dtype=torch.long).flatten().tolist()
        if not idx:
            raise MechinterpError("The subset is empty: select at least one prompt.")
        if min(idx) < -len(self) or max(idx) >= len(self):
            raise MechinterpError(f"Subset index out of range for a task of {len(self)} prompts: {idx}.")
        idx = [i % len(self) for i in idx]
        if self.metric_fn is not None or self.accuracy_fn is not None:
            raise MechinterpError(
                f"Task {self.name!r} has a metric that closes over its whole batch, so it cannot be subset; "
                f"load a smaller task with mechinterp.tasks.load({self.name!r}, model, n=...) instead.")
        rows = torch.as_tensor(idx)

        def pick(values: Any) -> Any:
            return [values[i] for i in idx] if len(values) == len(self) else values

        truth = dataclasses.replace(
            self.ground_truth,
            positions=pick(self.ground_truth.positions),
            labels={k: pick(v) for k, v in self.ground_truth.labels.items()},
        )
        width = int(self.lengths[rows].max())
        return dataclasses.replace(
            self,
            clean_prompts=pick(self.clean_prompts), corrupted_prompts=pick(self.corrupted_prompts),
            clean_tokens=self.clean_tokens[rows, :width], corrupted_tokens=self.corrupted_tokens[rows, :width],
            lengths=self.lengths[rows], correct_answers=pick(self.correct_answers), wrong_answers=pick(self.wrong_answers),
            correct_tokens=self.correct_tokens[rows], wrong_tokens=self.wrong_tokens[rows], ground_truth=truth,
        )

    def metric(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, " batch"]:
        """The task's default metric per prompt (logit difference by default)."""
        if self.metric_fn is not None:
            return self.metric_fn(logits)
        return logit_diff_metric(logits, self.correct_tokens, self.wrong_tokens, self.answer_pos)

    def accuracy(self, logits: Float[Tensor, "batch pos d_vocab"]) -> float:
        """Fraction of prompts whose top-1 prediction at the answer position is correct."""
        if self.accuracy_fn is not None:
            return self.accuracy_fn(logits).float().mean().item()
        rows = torch.arange(logits.shape[0], device=logits.device)
        top = logits[rows, self.answer_pos.to(logits.device)].argmax(-1)
        return (top == self.correct_tokens.to(logits.device)).float().mean().item()


_REGISTRY: dict[str, Callable[..., Task]] = {}


def register(name: str) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Decorator registering a generator ``fn(model, n=..., seed=..., **kw) -> Task``."""

    def wrap(fn: Callable[..., Task]) -> Callable[..., Task]:
        _REGISTRY[name] = fn
        return fn

    return wrap


def names() -> list[str]:
    """Names of the registered tasks."""
    return sorted(_REGISTRY)


def load(name: str, model: Any, n: int = 64, seed: int = 0, **kwargs: Any) -> Task:
    """Generate ``n`` prompts of task ``name`` for ``model`` (deterministic in ``seed``).

    Raises:
        MechinterpError: unknown task (the message lists the valid ones), or a task whose
            words are not single tokens for this model's tokenizer (the message names them).
    """
    if name not in _REGISTRY:
        raise MechinterpError(f"Unknown task {name!r}. Valid tasks: {names()}.")
    if n < 1:
        raise MechinterpError(f"n must be at least 1 (got {n}).")
    return _REGISTRY[name](model, n=n, seed=seed, **kwargs)
