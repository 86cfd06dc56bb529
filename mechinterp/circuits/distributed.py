"""Edge scoring sharded over the processes of a ``torchrun`` launch (:mod:`mechinterp.core.distributed`).

Inside ``with mechinterp.distributed():`` on several ranks, :func:`~mechinterp.circuits.discover`
splits the task's prompts into contiguous blocks; each rank prepares edge patching on its block
and runs the scorer there. The scorers that are a mean over prompts (``eap``,
``eap-ig-inputs``, ``eap-ig-activations``, ``exact``, ``node``: the objective is the mean
metric) are combined on every rank as ``sum_k n_k scores_k / N`` in float64, in rank order;
the result equals the one-process scores to float32 rounding (tested to 1e-6 with two gloo
processes). ACDC's greedy pruning is not a sum over prompts and raises. With
``distributed(batch_size=B)`` each rank scores its block in calls of ``B`` prompts (also in a
one-process run: a sweep over thousands of prompts in bounded memory).

Ablations: ``corrupted`` and ``zero`` are per prompt; ``mean`` takes the per-position mean of
the corrupted sender outputs over the *whole* set (each block's masked sums and counts are
gathered); ``resample`` gives each prompt the clean run of its partner under the whole set's
permutation (:func:`mechinterp.core.ablation.resample_permutation`), computed as a corrupted
run on the partners' tokens.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from mechinterp.core.ablation import resample_permutation
from mechinterp.core.distributed import Shard, combine_means, gather_objects, gather_results, local, shard_entry_point
from mechinterp.core.validation import check_task
from mechinterp.circuits.engine import ABLATIONS, prepare_edge_patching, sender_outputs
from mechinterp.circuits.graph import Graph
from mechinterp.errors import DistributedError, MechinterpError

__all__ = ["LINEAR_SCORERS", "batch_setup", "shards_task", "whole_set_mean"]

#: scorers whose scores are a mean over prompts (they shard exactly)
LINEAR_SCORERS = ("eap", "eap-ig-inputs", "eap-ig-activations", "exact", "node")


def _shard_task(task: Any, rows: slice) -> Any:
    sub = task.subset(rows)  # keeps the whole set's padded width (subset trims it)
    return dataclasses.replace(sub, clean_tokens=task.clean_tokens[rows], corrupted_tokens=task.corrupted_tokens[rows])


def whole_set_mean(model: Any, task: Any, ctx: Shard, gather: bool = True) -> Any:
    """Mean ablation's values: per position, the mean corrupted sender output over the prompts real there, whole set.

    Each rank sums its batches (float64, padding masked out), the sums and counts are gathered and
    combined in rank order; as :func:`~mechinterp.circuits.prepare_edge_patching` computes it on all prompts.
    ``gather=False``: this rank's ``(masked sum, count, plain sum)`` only.
    """
    graph = Graph.from_model(model)
    corrupted, lengths = task.corrupted_tokens, getattr(task, "lengths", None)
    total = count = plain = None
    for rows in ctx.batches(len(task)):
        tokens = corrupted[rows].to(model.cfg.device)
        outs = sender_outputs(model, graph, tokens).double()  # [batch, pos, n_senders, d_model]
        if lengths is None:
            real = torch.ones(outs.shape[:2], dtype=torch.float64, device=outs.device)
        else:
            real = (torch.arange(outs.shape[1], device=outs.device)[None] < lengths[rows].to(outs.device)[:, None]).double()
        parts = ((outs * real[:, :, None, None]).sum(0).cpu(), real.sum(0).cpu(), outs.sum(0).cpu())
        total, count, plain = parts if total is None else (total + parts[0], count + parts[1], plain + parts[2])  # type: ignore[operator]
    if not gather:
        return total, count, plain
    return _combine_sums(gather_objects((total, count, plain), ctx), len(task))


def _combine_sums(gathered: list[Any], n: int) -> torch.Tensor:
    total = sum(p[0] for p in gathered)
    count = sum(p[1] for p in gathered)[:, None, None]
    plain = sum(p[2] for p in gathered) / n
    return torch.where(count > 0, total / count.clamp(min=1), plain)[None]  # type: ignore[operator]


def batch_setup(model: Any, task: Any, rows: slice, ablation: str, seed: int, mean: torch.Tensor | None) -> Any:
    """The :class:`~mechinterp.circuits.PatchSetup` of the prompts ``rows``, with the whole set's mean / resample values."""
    clean = task.clean_tokens
    if ablation == "resample":
        if clean.shape[0] < 2:
            raise MechinterpError("Resample ablation needs at least 2 prompts (each takes another's activations).")
        partners = clean[resample_permutation(clean.shape[0], seed)][rows]  # each prompt's partner in the whole set
        setup = prepare_edge_patching(model, clean[rows], partners, ablation="corrupted")
        return dataclasses.replace(setup, ablation="resample", corrupted_tokens=None)
    if ablation == "mean":
        setup = prepare_edge_patching(model, clean[rows], ablation="zero")
        return dataclasses.replace(setup, patched=mean.to(setup.clean.device, setup.clean.dtype), ablation="mean",  # type: ignore[union-attr]
                                   corrupted_tokens=task.corrupted_tokens[rows].to(setup.tokens.device))
    return prepare_edge_patching(model, clean[rows], task.corrupted_tokens[rows], ablation=ablation, seed=seed)


def _sharded_discover(fn: Callable[..., Any], ctx: Shard, args: dict[str, Any]) -> Any:
    options = args.pop("options", {}) or {}
    model, task = args["model"], args["task"]
    method, ablation = args.get("method", "eap"), args.get("ablation", "corrupted")
    if method not in LINEAR_SCORERS:
        raise DistributedError(
            f"method={method!r} is not a mean over prompts, so it cannot be sharded; use one of {list(LINEAR_SCORERS)} "
            "in a sharded run, or run it without mechinterp.distributed() (or --distributed).")
    if args.get("setup") is not None:
        raise DistributedError("setup= holds the whole prompt set; pass the task and setup=None in a sharded run.")
    if args.get("node_first_pass") is not None:
        raise DistributedError("node_first_pass picks candidates from the node scores of all prompts; pass explicit "
                               "candidates= or run without mechinterp.distributed() (or --distributed).")
    if task is None or not hasattr(task, "clean_tokens"):
        raise MechinterpError("discover needs a mechinterp Task (mechinterp.tasks.load(name, model, n=...)).")
    if ablation not in ABLATIONS:
        raise MechinterpError(f"Unknown ablation {ablation!r}; use one of {ABLATIONS}.")
    check_task(model, task)
    if args.get("batch_size") is not None and ctx.batch_size is None:  # discover(batch_size=...) inside a sharded run
        ctx = dataclasses.replace(ctx, batch_size=args["batch_size"])
    start = time.perf_counter()
    n, seed = len(task), args.get("seed", 0)
    mean = gather_results(lambda: whole_set_mean(model, task, ctx, gather=False), ctx) if ablation == "mean" else None
    if mean is not None:
        mean = _combine_sums(mean, len(task))
    last: list[Any] = []

    def compute() -> list[tuple[Any, ...]]:
        mine = []
        for rows in ctx.batches(n):
            setup = batch_setup(model, task, rows, ablation, seed, mean)
            with local():
                last[:] = [fn(model, _shard_task(task, rows), method, ablation, setup=setup, seed=seed, **options)]
            tensors = {k: v.cpu() for k, v in last[0].info.items() if isinstance(v, torch.Tensor)}
            mine.append((last[0].scores.cpu(), tensors, rows.stop - rows.start))
        return mine

    parts = [p for block in gather_results(compute, ctx) for p in block]
    part = last[0]
    counts = [p[2] for p in parts]
    scores = combine_means([p[0] for p in parts], counts).float()
    info = {**part.info, **{k: combine_means([p[1][k] for p in parts], counts).to(v.dtype) for k, v in parts[0][1].items()}}
    info.update(n_prompts=n, world_size=ctx.world_size, batches=len(parts), seconds=time.perf_counter() - start)
    g = part.graph
    circuit = dataclasses.replace(part, scores=scores, selected=(g.real & (scores != 0)).cpu(), info=info)
    top_n = args.get("top_n")
    return circuit.top_n(top_n) if top_n is not None else circuit


def shards_task(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Make ``discover`` shard its task's prompts inside an open :func:`mechinterp.distributed` context (several ranks,
    or a ``batch_size``); otherwise it is ``discover``."""
    return shard_entry_point(_sharded_discover)(fn)

