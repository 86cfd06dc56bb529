"""Edge scoring sharded over the processes of a ``torchrun`` launch (:mod:`mechinterp.core.distributed`).

Inside ``with mechinterp.distributed():`` on several ranks, :func:`~mechinterp.circuits.discover`
splits the task's prompts into contiguous blocks; each rank prepares edge patching on its block
and runs the scorer there. The scorers that are a mean over prompts (``eap``,
``eap-ig-inputs``, ``eap-ig-activations``, ``exact``, ``node``: the objective is the mean
metric) are combined on every rank as ``sum_k n_k scores_k / N`` in float64, in rank order;
the result equals the one-process scores to float32 rounding (tested to 1e-6 with two gloo
processes). ACDC's greedy pruning is not a sum over prompts and raises.

Ablations: ``corrupted`` and ``zero`` are per prompt; ``mean`` takes the per-position mean of
the corrupted sender outputs over the *whole* set (each block's masked sums and counts are
gathered); ``resample`` gives each prompt the clean run of its partner under the whole set's
permutation (:func:`mechinterp.core.ablation.resample_permutation`), computed as a corrupted
run on the partners' tokens.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import time
from collections.abc import Callable
from typing import Any

import torch

from mechinterp.core.ablation import resample_permutation
from mechinterp.core.distributed import Shard, combine_means, gather_objects, local, shard_rows, sharding
from mechinterp.core.validation import check_task
from mechinterp.circuits.engine import prepare_edge_patching
from mechinterp.errors import DistributedError, MechinterpError

__all__ = ["LINEAR_SCORERS", "shards_task", "sharded_setup"]

#: scorers whose scores are a mean over prompts (they shard exactly)
LINEAR_SCORERS = ("eap", "eap-ig-inputs", "eap-ig-activations", "exact", "node")


def _shard_task(task: Any, rows: slice) -> Any:
    sub = task.subset(rows)  # keeps the whole set's padded width (subset trims it)
    return dataclasses.replace(sub, clean_tokens=task.clean_tokens[rows], corrupted_tokens=task.corrupted_tokens[rows])


def sharded_setup(model: Any, task: Any, rows: slice, ablation: str, seed: int, ctx: Shard) -> Any:
    """This rank's :class:`~mechinterp.circuits.PatchSetup`, with the whole set's mean / resample ablation values."""
    clean = task.clean_tokens
    lengths = getattr(task, "lengths", None)
    if ablation == "resample":
        if clean.shape[0] < 2:
            raise MechinterpError("Resample ablation needs at least 2 prompts (each takes another's activations).")
        partners = clean[resample_permutation(clean.shape[0], seed)][rows]
        setup = prepare_edge_patching(model, clean[rows], partners, ablation="corrupted")
        return dataclasses.replace(setup, ablation="resample", corrupted_tokens=None)
    shard_lengths = None if lengths is None else lengths[rows]
    if ablation != "mean":
        return prepare_edge_patching(model, clean[rows], task.corrupted_tokens[rows], ablation=ablation,
                                     lengths=shard_lengths, seed=seed)
    setup = prepare_edge_patching(model, clean[rows], task.corrupted_tokens[rows], ablation="corrupted")
    values = setup.patched.double()  # [block, pos, n_senders, d_model]
    if lengths is None:
        real = torch.ones(values.shape[:2], dtype=torch.float64, device=values.device)
    else:
        real = (torch.arange(values.shape[1], device=values.device)[None] < shard_lengths.to(values.device)[:, None]).double()
    w = real[:, :, None, None]
    parts = gather_objects(((values * w).sum(0).cpu(), real.sum(0).cpu(), values.sum(0).cpu(), values.shape[0]), ctx)
    total = sum(p[0] for p in parts)
    count = sum(p[1] for p in parts)[:, None, None]
    plain = sum(p[2] for p in parts) / sum(p[3] for p in parts)
    mean = torch.where(count > 0, total / count.clamp(min=1), plain)[None]
    return dataclasses.replace(setup, patched=mean.to(setup.patched.device, setup.patched.dtype), ablation="mean")


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
    check_task(model, task)
    start = time.perf_counter()
    n = len(task)
    rows = shard_rows(n, ctx)
    seed = args.get("seed", 0)
    setup = sharded_setup(model, task, rows, ablation, seed, ctx)
    with local():
        part = fn(model, _shard_task(task, rows), method, ablation, setup=setup, seed=seed, **options)
    size = rows.stop - rows.start
    tensors = {k: v for k, v in part.info.items() if isinstance(v, torch.Tensor)}
    parts = gather_objects((part.scores.cpu(), {k: v.cpu() for k, v in tensors.items()}, size), ctx)
    counts = [p[2] for p in parts]
    scores = combine_means([p[0] for p in parts], counts).float()
    info = {**part.info, **{k: combine_means([p[1][k] for p in parts], counts).to(v.dtype) for k, v in tensors.items()}}
    info.update(n_prompts=n, world_size=ctx.world_size, seconds=time.perf_counter() - start)
    g = part.graph
    circuit = dataclasses.replace(part, scores=scores, selected=(g.real & (scores != 0)).cpu(), info=info)
    top_n = args.get("top_n")
    return circuit.top_n(top_n) if top_n is not None else circuit


def shards_task(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Make ``discover`` shard its task's prompts inside an open :func:`mechinterp.distributed` context of several ranks."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = sharding()
        if ctx is None:
            return fn(*args, **kwargs)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as err:
            raise DistributedError(f"{fn.__name__}: {err}") from None
        return _sharded_discover(fn, ctx, dict(bound.arguments))

    return wrapper

