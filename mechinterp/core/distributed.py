"""Data-parallel sweeps: shard the prompts over processes with ``torch.distributed`` and reduce exactly.

A sweep over thousands of prompts (activation patching, EAP-IG, integrated gradients, caching
a corpus) is a sum or a list over prompts. Launched with ``torchrun``, each process (*rank*)
takes one contiguous block of the prompts, runs the ordinary one-process method on it, and the
blocks are gathered in rank order, so that concatenating them restores the prompt order and
every rank ends with the same result as a one-process run:

* per-prompt outputs (attributions, cached activations) are gathered and concatenated;
* means over prompts are gathered as each block's mean and prompt count and combined on every
  rank in rank order, in float64 (``sum_k n_k mean_k / N``), never by an ``all_reduce`` of
  float32 partial sums, so every rank holds the same numbers and they equal the one-process
  mean to float32 rounding.

The engine is PyTorch's own: ``init_process_group`` reads torchrun's ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; NCCL on GPUs (each rank on
``cuda:LOCAL_RANK``), gloo on the CPU. One switch turns it on::

    with mechinterp.distributed() as dist:      # torchrun --nproc-per-node 2 script.py
        model = mechinterp.load(name, device=dist.device)
        result = activation_patch(model, task)  # each rank patches its block; all get the whole result

Inside the context, the sharding entry points (``activation_patch`` and the ``patch_*_every``
sweeps, ``circuits.discover``, ``attribution.attribute_many``, :class:`ShardedCache`) split
their prompts; everything else runs as usual. Without torchrun's variables the context is a
one-process run (``world_size == 1``): the same script works under ``python`` and ``torchrun``.
The CLI's ``--distributed`` flag opens this context.

Example:
    >>> import mechinterp
    >>> from mechinterp.core.distributed import distributed, shard_bounds
    >>> shard_bounds(10, rank=1, world_size=4)  # contiguous blocks, the first ranks take one more
    (3, 6)
    >>> with distributed() as dist:  # no torchrun: one process
    ...     dist.world_size
    1
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime
import functools
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
from torch import Tensor

from mechinterp.errors import DistributedError

__all__ = [
    "Shard", "distributed", "sharding", "current", "local", "shard_bounds", "shard_rows", "gather_rows",
    "gather_objects", "gather_results", "combine_means", "batch_independent", "shard_entry_point", "ENV_VARS",
]

#: torchrun's variables, read by :func:`distributed`.
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

_ACTIVE: contextvars.ContextVar[Shard | None] = contextvars.ContextVar("mechinterp_distributed", default=None)
_SUSPENDED: contextvars.ContextVar[bool] = contextvars.ContextVar("mechinterp_distributed_local", default=False)


@dataclass(frozen=True)
class Shard:
    """Where this process stands in a data-parallel run.

    Attributes:
        rank: this process's index, ``0 .. world_size - 1`` (rank 0 writes outputs).
        world_size: the number of processes.
        local_rank: the index of this process on its host (its GPU under NCCL).
        backend: ``"nccl"``, ``"gloo"``, or ``None`` for a one-process run.
        device: the device this rank's model should live on (``cuda:LOCAL_RANK`` under NCCL, else CPU).
        batch_size: prompts per call of the one-process method on each rank (``None``: the rank's
            whole block in one call); sweeps over thousands of prompts set it to bound memory.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str | None
    device: torch.device
    batch_size: int | None = None

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that prints and writes files)."""
        return self.rank == 0

    def rows(self, n: int) -> slice:
        """This rank's block of ``n`` prompts (see :func:`shard_bounds`)."""
        return slice(*shard_bounds(n, self.rank, self.world_size))

    def batches(self, n: int) -> list[slice]:
        """This rank's block of ``n`` prompts cut into calls of at most :attr:`batch_size` prompts."""
        rows = shard_rows(n, self)
        step = self.batch_size or max(1, rows.stop - rows.start)
        return [slice(i, min(rows.stop, i + step)) for i in range(rows.start, rows.stop, step)]

    def barrier(self) -> None:
        """Wait for every rank (a no-op in a one-process run)."""
        if self.world_size > 1:
            tdist.barrier()


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of ``rank``'s contiguous block of ``n`` items; the first ``n % world_size`` ranks take one more.

    Concatenating the blocks of ranks ``0 .. world_size - 1`` gives ``0 .. n - 1`` in order.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise DistributedError(f"rank must be in [0, world_size) with world_size >= 1; got rank={rank}, world_size={world_size}.")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"The environment variable {name}={value!r} is not an integer; launch with torchrun, which "
                               "sets RANK, WORLD_SIZE and LOCAL_RANK.") from None


def _device_for(backend: str, local_rank: int) -> torch.device:
    if backend != "nccl":
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if local_rank >= count:
        raise DistributedError(
            f"backend='nccl' needs one GPU per process, but LOCAL_RANK={local_rank} and this host has {count} GPU(s): "
            f"launch at most {count} processes per host (torchrun --nproc-per-node {max(count, 1)}), or use backend='gloo'.")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


@contextmanager
def distributed(backend: str | None = None, *, batch_size: int | None = None, timeout_s: float = 1800.0) -> Iterator[Shard]:
    """Shard prompt sweeps over the processes of a ``torchrun`` launch for the duration of the block.

    Joins the process group torchrun describes (``init_process_group`` from ``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), or uses one the caller already
    initialised, and destroys the group on exit if it made it. Without torchrun's variables it
    is a one-process run. Nested calls reuse the open context (with their own ``batch_size`` if given).

    Args:
        backend: ``"nccl"`` (GPUs, one per process) or ``"gloo"`` (CPU); default NCCL when CUDA
            is available, else gloo.
        batch_size: prompts per call on each rank (see :attr:`Shard.batch_size`); with it, a
            one-process run also sweeps its prompts in calls of this size.
        timeout_s: how long a collective waits for the other ranks before failing.

    Yields:
        The :class:`Shard` of this process.

    Raises:
        DistributedError: an unknown backend, ``RANK``/``WORLD_SIZE`` set without the rendezvous
            address, or NCCL with more processes than GPUs on the host.

    Example:
        >>> with distributed() as dist:  # doctest: +SKIP
        ...     model = mechinterp.load("zoo:toy-lm", device=dist.device)
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise DistributedError(f"batch_size must be a positive integer (prompts per call on each rank) or None; got {batch_size!r}.")
    open_ctx = _ACTIVE.get()
    if open_ctx is not None:  # nested: the same group, with this block's batch size if one is given
        inner = open_ctx if batch_size is None else dataclasses.replace(open_ctx, batch_size=batch_size)
        token = _ACTIVE.set(inner)
        try:
            yield inner
        finally:
            _ACTIVE.reset(token)
        return
    if backend not in (None, "nccl", "gloo"):
        raise DistributedError(f"backend must be 'nccl' (GPUs), 'gloo' (CPU) or None (pick by device); got {backend!r}.")
    owns = False
    if tdist.is_available() and tdist.is_initialized():
        used = tdist.get_backend()
        rank, world = tdist.get_rank(), tdist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        ctx = Shard(rank, world, local_rank, used, _device_for(used, local_rank), batch_size)
    elif int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        ctx = Shard(0, 1, 0, None, torch.device("cuda" if torch.cuda.is_available() else "cpu"), batch_size)
    else:
        missing = [v for v in ENV_VARS if v not in os.environ]
        if missing:
            raise DistributedError(
                f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {missing} are not set: launch with torchrun "
                "(torchrun --nproc-per-node N script.py), which sets all of them, or unset WORLD_SIZE to run one process.")
        if not tdist.is_available():
            raise DistributedError("This PyTorch build has no torch.distributed; install a build with it or run one process.")
        rank, world, local_rank = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
        used = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        device = _device_for(used, local_rank)
        kwargs: dict[str, Any] = {"device_id": device} if used == "nccl" else {}
        tdist.init_process_group(used, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
        owns = True
        ctx = Shard(rank, world, local_rank, used, device, batch_size)
    token = _ACTIVE.set(ctx)
    try:
        yield ctx
    finally:
        _ACTIVE.reset(token)
        if owns:
            tdist.destroy_process_group()


def current() -> Shard | None:
    """The open :func:`distributed` context (``None`` outside one)."""
    return _ACTIVE.get()


def sharding() -> Shard | None:
    """The context sharding entry points split their prompts for: open, not :func:`local`, several ranks or a batch size."""
    ctx = _ACTIVE.get()
    active = ctx is not None and (ctx.world_size > 1 or ctx.batch_size is not None) and not _SUSPENDED.get()
    return ctx if active else None


@contextmanager
def local() -> Iterator[None]:
    """Run the enclosed calls on this rank's prompts only (a sharding entry point runs the one-process method in it)."""
    token = _SUSPENDED.set(True)
    try:
        yield
    finally:
        _SUSPENDED.reset(token)


def shard_rows(n: int, ctx: Shard | None) -> slice:
    """This rank's rows of ``n`` prompts (all of them outside a context); raises when some rank would get none."""
    if ctx is None:
        return slice(0, n)
    if n < ctx.world_size:
        raise DistributedError(
            f"{n} prompt(s) cannot be split over {ctx.world_size} processes (each needs at least one): "
            "pass more prompts or launch fewer processes.")
    return ctx.rows(n)


def _comm_device(ctx: Shard) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if ctx.backend == "nccl" else torch.device("cpu")


def gather_rows(x: Tensor, ctx: Shard | None = None) -> Tensor:
    """Concatenate every rank's ``x`` along dim 0, in rank order (blocks may differ in length); same on every rank.

    Tensors travel as they are, except that gloo gets bf16/fp16 as float32 and booleans as
    uint8 (exact round trips). The result has ``x``'s dtype and device.
    """
    ctx = ctx or current()
    if ctx is None or ctx.world_size == 1:
        return x
    dev = _comm_device(ctx)
    wire = x.detach().to(dev)
    if x.dtype == torch.bool:
        wire = wire.to(torch.uint8)
    elif ctx.backend == "gloo" and x.dtype in (torch.bfloat16, torch.float16):
        wire = wire.float()
    wire = wire.contiguous()
    sizes = [torch.zeros(1, dtype=torch.long, device=dev) for _ in range(ctx.world_size)]
    tdist.all_gather(sizes, torch.tensor([wire.shape[0]], dtype=torch.long, device=dev))
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    if wire.shape[0] < longest:
        wire = torch.cat([wire, wire.new_zeros(longest - wire.shape[0], *wire.shape[1:])])
    parts = [torch.empty_like(wire) for _ in range(ctx.world_size)]
    tdist.all_gather(parts, wire)
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).to(device=x.device, dtype=x.dtype)


def gather_objects(obj: Any, ctx: Shard | None = None) -> list[Any]:
    """Every rank's ``obj`` (picklable), as a list in rank order; ``[obj]`` in a one-process run."""
    ctx = ctx or current()
    if ctx is None or ctx.world_size == 1:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    tdist.all_gather_object(out, obj)
    return out


def gather_results(compute: Callable[[], Any], ctx: Shard | None = None) -> list[Any]:
    """Run ``compute()`` on this rank and gather every rank's result in rank order; a failure on any rank fails all.

    Without this, a rank whose block raised (a NaN metric on its prompts, say) would leave the others
    waiting in the next collective until the timeout. Here every rank reaches the gather: the rank that
    failed re-raises its own error, the others raise a :class:`DistributedError` naming that rank and
    its message.
    """
    ctx = ctx or current()
    try:
        mine, failure = compute(), None
    except Exception as err:  # noqa: BLE001 - reported to every rank, then re-raised here
        if ctx is None or ctx.world_size == 1:
            raise
        mine, failure, own = None, f"{type(err).__name__}: {err}", err
    gathered = gather_objects((failure, mine), ctx)
    failed = [(rank, msg) for rank, (msg, _) in enumerate(gathered) if msg is not None]
    if failure is not None:
        raise own
    if failed:
        rank, msg = failed[0]
        raise DistributedError(f"rank {rank} of {len(gathered)} failed on its block of prompts: {msg}")
    return [result for _, result in gathered]


def combine_means(means: Sequence[Tensor | float], counts: Sequence[int]) -> Tensor:
    """The mean over all prompts from each block's mean and size: ``sum_k n_k mean_k / N`` in float64, in rank order.

    Every rank computes it from the same gathered numbers in the same order, so all hold the
    same bits; it equals the one-process mean up to float32 rounding of the block means.
    """
    if len(means) != len(counts) or not counts or sum(counts) <= 0:
        raise DistributedError(f"combine_means needs one positive count per block; got {len(means)} means, counts {list(counts)}.")
    total = None
    for mean, n in zip(means, counts):
        term = torch.as_tensor(mean).detach().to("cpu", torch.float64) * n
        total = term if total is None else total + term
    return total / sum(counts)  # type: ignore[operator]


def batch_independent(metric: Any) -> Any:
    """Mark a metric ``logits [batch, pos, d_vocab] -> [batch]`` as reading each prompt on its own.

    A sharded sweep hands each rank's metric only that rank's prompts. Task metrics and named
    metrics are subset row by row; a plain callable may close over per-prompt data (answer ids
    of the whole batch), so sharded entry points refuse it unless it has a ``subset(rows)``
    method or is wrapped with this function (whose ``subset`` returns the metric itself).

    Example:
        >>> m = batch_independent(lambda logits: logits[:, -1, 0] - logits[:, -1, 1])
        >>> m.subset(slice(0, 2)) is m
        True
    """

    class _Independent:
        def __init__(self, fn: Any) -> None:
            self.fn = fn
            self.__name__ = getattr(fn, "__name__", type(fn).__name__)

        def __call__(self, logits: Tensor) -> Tensor:
            return self.fn(logits)

        def subset(self, rows: Any) -> Any:
            return self

    return _Independent(metric)


def shard_entry_point(run_sharded: Callable[[Callable[..., Any], Shard, dict[str, Any]], Any]) -> Callable[..., Any]:
    """A decorator factory: the decorated function runs as itself outside a :func:`sharding` context,
    and as ``run_sharded(fn, ctx, bound_arguments)`` inside one (a family's sharded route).

    Arguments that do not bind to the function's signature raise a :class:`DistributedError`.
    """
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
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
            return run_sharded(fn, ctx, dict(bound.arguments))

        return wrapper

    return decorate
