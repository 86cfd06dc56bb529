"""The task object and the task registry.

A *task* is a batch of clean prompts, corrupted prompts of the same token length, the
right and wrong answer per prompt, a default metric and **ground truth**: what a correct
attribution, probe or circuit method must find. Task generators register themselves with
:func:`register`; users call :func:`mechinterp.tasks.load`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mechinterp.core.validation import check_count, vocab_signature
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
        correct_answers / wrong_answers: answer strings in the form the model continues
            with (``"Mary"`` for a zoo word tokenizer, ``" Mary"`` with its leading space
            for a BPE one); ``correct_tokens`` / ``wrong_tokens`` their single token ids.
        ground_truth: see :class:`GroundTruth`.
        metric_fn: the default metric, ``logits -> [batch]`` (logit difference unless the
            task needs another, such as greater-than's probability difference).
        accuracy_fn: ``logits -> [batch]`` booleans, for tasks where "correct" is not one
            token (greater-than: any year above the start year). Give either function a
            ``subset(rows)`` method (as greater-than's :class:`YearMetric` has) so that
            :meth:`subset`, :meth:`solved` and batched :meth:`evaluate` can use it.
        meta: how the task was made: for the language tasks ``dropped_words``,
            ``dropped_pairs`` and ``filtered`` (what was left out and why),
            ``tokenizer_kind``, ``prepend_bos``; ``solved`` after :meth:`solved` or
            ``load(..., only_solved=True)``.
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
                metric closes over its whole batch (a ``metric_fn`` / ``accuracy_fn``
                without a ``subset(rows)`` method, as the tracr tasks have): build a
                smaller task with ``tasks.load(..., n=...)`` instead.

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
        rows = torch.as_tensor(idx)
        fns = {}
        for key in ("metric_fn", "accuracy_fn"):
            fn = getattr(self, key)
            if fn is not None and not hasattr(fn, "subset"):
                raise MechinterpError(
                    f"Task {self.name!r} has a {key} that closes over its whole batch, so it cannot be subset; "
                    f"load a smaller task with mechinterp.tasks.load({self.name!r}, model, n=...) instead, or give "
                    "the function a subset(rows) method.")
            fns[key] = fn.subset(rows) if fn is not None else None

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
            **fns,
        )

    def metric(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, " batch"]:
        """The task's default metric per prompt (logit difference by default)."""
        if self.metric_fn is not None:
            return self.metric_fn(logits)
        return logit_diff_metric(logits, self.correct_tokens, self.wrong_tokens, self.answer_pos)

    def correct(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Bool[Tensor, " batch"]:
        """Per prompt, whether the top-1 prediction at the answer position is correct.

        ``accuracy_fn`` decides where the task has one (greater-than: any later year).
        """
        if self.accuracy_fn is not None:
            return self.accuracy_fn(logits).bool()
        rows = torch.arange(logits.shape[0], device=logits.device)
        top = logits[rows, self.answer_pos.to(logits.device)].argmax(-1)
        return top == self.correct_tokens.to(logits.device)

    def accuracy(self, logits: Float[Tensor, "batch pos d_vocab"]) -> float:
        """Fraction of prompts whose top-1 prediction at the answer position is correct."""
        return self.correct(logits).float().mean().item()

    def evaluate(self, model: Any, batch_size: int = 16) -> dict[str, Any]:
        """Run ``model`` on the clean and corrupted prompts and summarise how well it does.

        Returns:
            ``{"n", "accuracy", "metric_mean", "corrupted_accuracy", "corrupted_metric_mean",
            "correct"}``: top-1 accuracy and the mean of the task's metric on clean and
            on corrupted prompts, and the per-prompt correctness (a list of bools).

        Example:
            >>> task = mechinterp.tasks.load("ioi", model, n=16)  # doctest: +SKIP
            >>> task.evaluate(model)["accuracy"]  # doctest: +SKIP
            1.0
        """
        clean = _per_prompt(self, model, self.clean_tokens, batch_size)
        corrupted = _per_prompt(self, model, self.corrupted_tokens, batch_size)
        return {
            "n": len(self),
            "accuracy": clean[0].float().mean().item(),
            "metric_mean": clean[1].mean().item(),
            "corrupted_accuracy": corrupted[0].float().mean().item(),
            "corrupted_metric_mean": corrupted[1].mean().item(),
            "correct": clean[0].tolist(),
        }

    def solved(self, model: Any, batch_size: int = 16) -> Task:
        """The prompts ``model`` answers correctly (top-1 on the clean prompt), as a new task.

        ``meta["solved"]`` records ``{"kept", "dropped", "accuracy"}`` (accuracy of the
        whole task before filtering). To get ``n`` solved prompts rather than the solved
        part of ``n``, use ``mechinterp.tasks.load(..., only_solved=True)``.

        Raises:
            MechinterpError: the model solves none of the prompts.

        Example:
            >>> task = mechinterp.tasks.load("facts", model, n=32).solved(model)  # doctest: +SKIP
            >>> task.meta["solved"]  # doctest: +SKIP
            {'kept': 27, 'dropped': 5, 'accuracy': 0.84375}
        """
        import dataclasses

        ok = _per_prompt(self, model, self.clean_tokens, batch_size)[0]
        keep = ok.nonzero().flatten()
        if len(keep) == 0:
            raise MechinterpError(
                f"The model solves none of the {len(self)} {self.name!r} prompts (top-1 accuracy 0): there is no "
                "behaviour to explain. Check the prompts and answers (task.clean_prompts, task.correct_answers).")
        info = {"kept": len(keep), "dropped": len(self) - len(keep), "accuracy": len(keep) / len(self)}
        task = self if len(keep) == len(self) else self.subset(keep)
        return dataclasses.replace(task, meta={**self.meta, "solved": info})


def _same_prefix(small: Task, big: Task) -> bool:
    """Whether ``big`` starts with the prompts of ``small`` (a task drawn again with a larger ``n``)."""
    if small.clean_prompts != big.clean_prompts[: len(small)]:
        return False
    width = small.clean_tokens.shape[1]
    return bool(torch.equal(small.clean_tokens, big.clean_tokens[: len(small), :width]))


def _per_prompt(
    task: Task, model: Any, tokens: Int[Tensor, "batch pos"], batch_size: int
) -> tuple[Bool[Tensor, " batch"], Float[Tensor, " batch"]]:
    """Per-prompt correctness and metric of ``task`` on ``tokens``, in batches (memory: one
    batch of logits at a time; tasks whose metric cannot be subset run in one batch)."""
    device = getattr(model.cfg, "device", None)
    whole = any(fn is not None and not hasattr(fn, "subset") for fn in (task.metric_fn, task.accuracy_fn))
    step = len(task) if whole else max(1, batch_size)
    oks, metrics = [], []
    with torch.no_grad():
        for start in range(0, len(task), step):
            rows = torch.arange(start, min(start + step, len(task)))
            part = task if len(rows) == len(task) else task.subset(rows)
            width = int(task.lengths[rows].max())
            logits = model(tokens[rows, :width].to(device))  # [chunk, pos, d_vocab]
            oks.append(part.correct(logits).cpu())
            metrics.append(part.metric(logits).float().cpu())
    return torch.cat(oks), torch.cat(metrics)


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


def load(name: str, model: Any, n: int = 64, seed: int = 0, only_solved: bool = False, **kwargs: Any) -> Task:
    """Generate ``n`` prompts of task ``name`` for ``model`` (deterministic in ``seed``).

    Args:
        name: a registered task (:func:`names`).
        model: the model whose tokenizer the prompts are written for.
        n: number of prompts.
        seed: seed of the draw.
        only_solved: keep only prompts ``model`` answers correctly (top-1), drawing more
            candidates (up to ``8 * n``) until ``n`` are solved; ``meta["solved"]`` says
            how many candidates were tried and dropped. Fewer than ``n`` come back, with a
            warning, when the model solves too few.
        **kwargs: task-specific options (``split=``, ``seq_len=``, ...).

    Raises:
        MechinterpError: unknown task (the message lists the valid ones), or a task whose
            words are not single tokens for this model's tokenizer (the message names them).

    Example:
        >>> task = mechinterp.tasks.load("ioi", model, n=16, only_solved=True)  # doctest: +SKIP
        >>> task.meta["solved"]  # doctest: +SKIP
        {'kept': 16, 'dropped': 3, 'candidates': 19, 'accuracy': 0.842}
    """
    if name not in _REGISTRY:
        raise MechinterpError(f"Unknown task {name!r}. Valid tasks: {names()}.")
    check_count(n, "n")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise MechinterpError(f"seed must be an integer, got {seed!r}.")
    return stamp_vocab(model, _draw(name, model, n, seed, only_solved, **kwargs))


def stamp_vocab(model: Any, task: Task) -> Task:
    """``task`` with ``meta["vocab"]``: the vocabulary it was built for (see :func:`~mechinterp.core.validation.check_task`)."""
    import dataclasses

    return dataclasses.replace(task, meta={**task.meta, "vocab": vocab_signature(model)})


def _draw(name: str, model: Any, n: int, seed: int, only_solved: bool, **kwargs: Any) -> Task:
    if not only_solved:
        return _REGISTRY[name](model, n=n, seed=seed, **kwargs)
    import dataclasses
    import warnings

    m, prev, ok = n, None, torch.zeros(0, dtype=torch.bool)
    while True:
        task = _REGISTRY[name](model, n=m, seed=seed, **kwargs)
        done = 0
        rowwise = all(fn is None or hasattr(fn, "subset") for fn in (task.metric_fn, task.accuracy_fn))
        if prev is not None and rowwise and len(task) > len(prev) and _same_prefix(prev, task):
            done = len(prev)  # generators are deterministic in seed: only the new prompts need a forward
        new = task if done == 0 else task.subset(range(done, len(task)))
        ok = torch.cat([ok[:done], _per_prompt(new, model, new.clean_tokens, 16)[0]])
        solved = ok.nonzero().flatten()
        prev = task
        if len(solved) >= n or m >= 8 * n or len(task) < m:  # enough, the cap, or the generator ran out
            break
        m = min(8 * n, 2 * m)
    if len(solved) == 0:
        raise MechinterpError(
            f"The model solves none of {len(task)} {name!r} prompts (top-1): there is no behaviour to explain here.")
    keep = solved[:n]
    tried = int(keep[-1]) + 1  # candidates examined until the n-th solved one
    info = {"kept": len(keep), "dropped": tried - len(keep), "candidates": tried, "accuracy": len(keep) / tried}
    if len(keep) < n:
        warnings.warn(
            f"Only {len(keep)} of {len(task)} {name!r} candidates are solved by the model (asked for {n}); "
            "returning those.",
            stacklevel=2)
    out = task if len(keep) == len(task) else task.subset(keep)
    return dataclasses.replace(out, meta={**task.meta, "solved": info})
