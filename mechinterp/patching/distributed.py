"""Activation patching sharded over the processes of a ``torchrun`` launch (:mod:`mechinterp.core.distributed`).

Inside ``with mechinterp.distributed():`` on several ranks, :func:`~mechinterp.patching.activation_patch`
and the ``patch_*_every`` sweeps split the prompts into contiguous blocks, each rank runs the
ordinary batched sweep on its block (``normalise=False``), and the per-block means of every
patched run, of the base run and of the source run are combined on every rank in rank order in
float64 (:func:`~mechinterp.core.distributed.combine_means`); the normalisation is applied to
the combined means. With ``distributed(batch_size=B)`` each rank sweeps its block in calls of
``B`` prompts (also in a one-process run), combined the same way. The result equals the one-process result to float32 rounding (tested to
1e-6 with two gloo processes).

What shards: a ``Task`` (its metric is subset row by row), prompts or token ids with a named
metric and per-prompt ``answers``, or a metric with a ``subset(rows)`` method
(:func:`~mechinterp.core.distributed.batch_independent` marks a plain callable that reads each
prompt on its own). Prompts are tokenised once on the whole set, so every block keeps the same
padded width (position labels and the ``pos`` axis agree across ranks). Mean and resample
ablation need activations of the whole set and raise :class:`~mechinterp.errors.DistributedError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mechinterp.core import metrics
from mechinterp.core.distributed import Shard, combine_means, gather_results, local, shard_entry_point
from mechinterp.core.tokens import Tokenized, tokenize
from mechinterp.errors import DistributedError, NonFiniteError

__all__ = ["shards_prompts", "shard_task", "shard_prompts", "shard_metric", "shard_answers"]


def shard_task(task: Any, rows: slice) -> Any:
    """``task`` restricted to ``rows``, keeping the whole set's padded width (``Task.subset`` trims it)."""
    sub = task.subset(rows)
    return dataclasses.replace(sub, clean_tokens=task.clean_tokens[rows], corrupted_tokens=task.corrupted_tokens[rows])


def _is_task(obj: Any) -> bool:
    return hasattr(obj, "clean_tokens") and hasattr(obj, "corrupted_tokens") and hasattr(obj, "subset")


def shard_prompts(model: Any, prompts: Any, rows: slice, name: str) -> Any:
    """This rank's rows of ``prompts`` (texts, ``[batch, pos]`` ids or a ``Tokenized``), tokenised on the whole set."""
    if prompts is None:
        return None
    if _is_task(prompts):
        return shard_task(prompts, rows)
    if isinstance(prompts, Tensor) and prompts.ndim == 2:
        return prompts[rows]
    tok = prompts if isinstance(prompts, Tokenized) else tokenize(model, prompts, name=name)
    return Tokenized(tok.tokens[rows], tok.attention_mask[rows], tok.lengths[rows], tok.padding_side)


def shard_metric(metric: Any, rows: slice, n: int) -> Any:
    """The metric for ``rows``: names pass through; callables need ``subset(rows)``."""
    if metric is None or isinstance(metric, str):
        return metric
    if hasattr(metric, "subset"):
        return metric.subset(torch.arange(n)[rows])
    raise DistributedError(
        "A sharded sweep cannot split this metric callable: it may close over per-prompt data of the whole set. "
        "Pass a Task, a named metric with answers, a metric with a subset(rows) method, or wrap a metric that reads "
        "each prompt on its own with mechinterp.core.distributed.batch_independent(metric).")


def shard_answers(answers: Any, rows: slice, n: int, pair: bool = False) -> Any:
    """Per-prompt answers restricted to ``rows``; one answer for all stays as it is; ``pair``: ``(correct, wrong)``."""
    if pair and isinstance(answers, (tuple, list)) and len(answers) == 2:
        return tuple(shard_answers(a, rows, n) for a in answers)
    if isinstance(answers, Tensor):
        return answers[rows] if answers.ndim and answers.shape[0] == n else answers
    if isinstance(answers, (list, tuple)) and len(answers) == n:
        return type(answers)(answers[rows])
    return answers


def _count(model: Any, clean: Any) -> int:
    if _is_task(clean):
        return len(clean)
    if isinstance(clean, (Tensor, Tokenized)):
        return int((clean.tokens if isinstance(clean, Tokenized) else clean).shape[0])
    if isinstance(clean, str):
        return 1
    return len(clean)


def _block_args(args: dict[str, Any], rows: slice, n: int) -> dict[str, Any]:
    """The arguments of one call on the prompts ``rows``."""
    model, clean = args["model"], args["clean"]
    out = dict(args)
    out["clean"] = shard_prompts(model, clean, rows, "clean")
    corrupted = args.get("corrupted")
    if isinstance(corrupted, Tensor):
        out["corrupted"] = corrupted[rows]
    elif corrupted is not None or not _is_task(clean):
        out["corrupted"] = shard_prompts(model, corrupted, rows, "corrupted")
    out["metric"] = shard_metric(args.get("metric"), rows, n)
    if args.get("answers") is not None:
        out["answers"] = shard_answers(args["answers"], rows, n, pair=args.get("metric") == "logit_diff")
    return out


def _sharded(fn: Callable[..., Any], ctx: Shard, args: dict[str, Any]) -> Any:
    extra = args.pop("kw", {}) or {}
    args = {**args, **extra}
    if args.get("ablation") in ("mean", "resample"):
        raise DistributedError(
            f"ablation={args['ablation']!r} reads activations of the whole prompt set, which a sharded sweep does not "
            "hold on one rank: run it without mechinterp.distributed() (or --distributed), or use ablation='zero' or "
            "corrupted prompts.")
    if args.get("cache") is not None:
        raise DistributedError("cache= holds the whole prompt set; pass cache=None in a sharded sweep (each rank caches its block).")
    normalise = args.pop("normalise", True)
    n = _count(args["model"], args["clean"])
    if isinstance(args["clean"], (list, tuple)) and not _is_task(args["clean"]):  # tokenise once, on the whole set
        args["clean"] = shard_prompts(args["model"], args["clean"], slice(0, n), "clean")
    if isinstance(args.get("corrupted"), (list, tuple)):
        args["corrupted"] = shard_prompts(args["model"], args["corrupted"], slice(0, n), "corrupted")
    last: list[Any] = []

    def compute() -> list[tuple[Any, ...]]:
        mine = []
        for rows in ctx.batches(n):
            with local():
                last[:] = [fn(**_block_args(args, rows, n), normalise=False)]
            p = last[0]
            mine.append((p.raw.cpu(), p.base_value, p.target_value, rows.stop - rows.start, p.labels, p.tokens))
        return mine

    parts = [p for block in gather_results(compute, ctx) for p in block]
    part = last[0]
    counts = [p[3] for p in parts]
    raw = combine_means([p[0] for p in parts], counts).to(part.raw.dtype)
    base = float(combine_means([p[1] for p in parts], counts))
    target = None if part.target_value is None else float(combine_means([p[2] for p in parts], counts))
    do_norm = bool(normalise) and target is not None
    if do_norm and abs(target - base) < 1e-8:  # type: ignore[operator]
        raise NonFiniteError(
            f"The base and target runs have the same mean metric ({base:.4g}), so normalised effects are "
            "undefined: the corruption does not change the metric. Pick another corruption or pass normalise=False.")
    values = metrics.normalise(raw, clean=target, corrupted=base) if do_norm else raw.clone()  # type: ignore[arg-type]
    return dataclasses.replace(part, values=values.to(part.values.device), raw=raw.to(part.raw.device), base_value=base,
                               target_value=target, normalised=do_norm, labels=parts[0][4], tokens=parts[0][5])


def shards_prompts(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Make a patching sweep (``fn(model, clean, corrupted, metric, ..., normalise=True)`` -> ``PatchResult``) shard
    its prompts inside an open :func:`mechinterp.distributed` context (several ranks, or a ``batch_size``); otherwise
    it is ``fn``."""
    return shard_entry_point(_sharded)(fn)
