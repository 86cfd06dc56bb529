"""Arguments and helpers shared by the subcommands.

One default model and one default task everywhere (:data:`DEFAULT_MODEL`,
:data:`DEFAULT_TASK`); ``--help`` shows every default (:class:`HelpFormatter`); output
folders are checked before any work starts (:func:`check_out`); long steps print progress
lines to stderr (:func:`steps`).
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mechinterp.core.atomic import writable_folder, write_text

__all__ = ["DEFAULT_MODEL", "DEFAULT_TASK", "DTYPES", "HelpFormatter", "add_distributed_arg", "add_model_args", "add_task_arg",
           "check_names", "check_out", "device_arg", "distributed_run", "did_you_mean", "dtype_arg", "load_model", "load_task", "out_dir", "steps", "write_json"]

#: the model every subcommand uses when ``--model`` is not given
DEFAULT_MODEL = "zoo:toy-lm"
#: the task every subcommand uses when ``--task`` is not given
DEFAULT_TASK = "ioi"

#: accepted ``--dtype`` spellings -> the name passed to :func:`mechinterp.load`
DTYPES = {
    "fp32": "float32", "float32": "float32", "f32": "float32",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp16": "float16", "float16": "float16", "f16": "float16", "half": "float16",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends ``(default: X)`` to every option's help, unless the help already names its default or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        if isinstance(action.default, list) and not action.default:
            return text
        return text + " (default: %(default)s)"


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """``" Did you mean 'ioi'?"`` when ``name`` is close to one of ``valid``, else ``""``."""
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def dtype_arg(text: str) -> str:
    """``--dtype``: ``fp32``/``bf16``/``fp16`` (or ``float32``/``bfloat16``/``float16``) -> the torch dtype name."""
    try:
        return DTYPES[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"unknown dtype {text!r}; use fp32, bf16 or fp16") from None


def device_arg(text: str) -> str:
    """``--device``: ``cpu``, ``cuda`` or ``cuda:<index>``; ``cuda`` on a machine without one is refused here."""
    value = text.strip().lower()
    kind, _, index = value.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind != "cuda" or not index.isdigit())):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda or cuda:<index>")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError("--device cuda: no CUDA device is available here; use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"--device {value}: only {torch.cuda.device_count()} CUDA device(s) here")
    return value


def add_model_args(parser: argparse.ArgumentParser, seed_help: str | None = None) -> None:
    """``--model``, ``--device``, ``--dtype``, ``--seed`` and ``--batch-size``.

    ``seed_help`` says what the seed drives in this subcommand (default: the task's prompt draw).
    """
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="zoo:<name>, a GGUF file, a local checkpoint folder, or a TransformerLens name")
    parser.add_argument("--device", type=device_arg, default=None, metavar="{cpu,cuda}", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--dtype", type=dtype_arg, default=None, metavar="{fp32,bf16,fp16}",
                        help="weights and activations: fp32 (default), bf16 or fp16 (float32/bfloat16/float16 too)")
    parser.add_argument("--seed", type=int, default=0,
                        help=seed_help or "seed of the task's prompt draw (and of torch/random, for reproducible runs)")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per forward pass")


def add_task_arg(parser: argparse.ArgumentParser, help_extra: str = "") -> None:
    """``--task`` with the shared default."""
    parser.add_argument("--task", default=DEFAULT_TASK, help="task name (see `mechinterp tasks`)" + help_extra)


def add_distributed_arg(parser: argparse.ArgumentParser) -> None:
    """``--distributed``: shard the prompts over the processes of a ``torchrun`` launch."""
    parser.add_argument("--distributed", action="store_true",
                        help="shard the prompts over the processes of a torchrun launch (torchrun --nproc-per-node N "
                             "-m mechinterp ...; reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): NCCL "
                             "with one GPU per process, gloo on CPU; rank 0 writes the outputs")


@contextmanager
def distributed_run(args: argparse.Namespace) -> Iterator[Any]:
    """Open :func:`mechinterp.distributed` when ``--distributed`` is given (yielding its ``Shard``), else yield ``None``.

    Under NCCL each rank's model goes to its own GPU (``cuda:LOCAL_RANK``): ``args.device`` is set to it.
    """
    if not getattr(args, "distributed", False):
        yield None
        return
    from mechinterp.core.distributed import distributed

    with distributed() as ctx:
        if ctx.backend == "nccl":
            args.device = str(ctx.device)
        yield ctx


def load_model(args: argparse.Namespace) -> Any:
    """Seed everything, then load ``args.model`` (a misspelled zoo name gets a "did you mean")."""
    import torch

    import mechinterp
    from mechinterp.errors import MechinterpError

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    check_names(args)
    return mechinterp.load(args.model, device=args.device, dtype=args.dtype)


def check_names(args: argparse.Namespace) -> None:
    """Refuse a misspelled ``zoo:`` model or task name before any work, with a "did you mean"."""
    import mechinterp
    from mechinterp.errors import MechinterpError

    name = str(getattr(args, "model", ""))
    if name.startswith("zoo:"):
        from mechinterp import zoo

        names = zoo.names()
        if name[4:] not in names:
            raise MechinterpError(f"No zoo model named {name[4:]!r}.{did_you_mean(name[4:], names)} "
                                  f"Zoo models: {', '.join(names)} (see `mechinterp models`).")
    task = getattr(args, "task", None)
    if isinstance(task, str) and task not in mechinterp.tasks.names():
        raise MechinterpError(f"Unknown task {task!r}.{did_you_mean(task, mechinterp.tasks.names())} "
                              f"Valid tasks: {mechinterp.tasks.names()} (see `mechinterp tasks`).")


def load_task(name: str, model: Any, **kwargs: Any) -> Any:
    """``mechinterp.tasks.load`` with a "did you mean" for a misspelled task name."""
    import mechinterp
    from mechinterp.errors import MechinterpError

    names = mechinterp.tasks.names()
    if name not in names:
        raise MechinterpError(f"Unknown task {name!r}.{did_you_mean(name, names)} Valid tasks: {names} "
                              "(see `mechinterp tasks`).")
    return mechinterp.tasks.load(name, model, **kwargs)


def check_out(path: str | Path, option: str = "--out") -> Path:
    """Create the output folder and prove it is writable, before any work starts.

    Raises:
        MechinterpError: the folder cannot be created or written (the message says which and what to do).
    """
    return writable_folder(path, option)


def out_dir(path: str | Path) -> Path:
    """Create and return the output folder (checked writable: :func:`check_out`)."""
    return check_out(path)


def steps(command: str, total: int, heartbeat_s: float | None = 15.0) -> Any:
    """Progress lines on stderr for a subcommand's steps (:class:`mechinterp.report.progress.Progress`).

    Each step prints a start and an end line with its time; a step longer than
    ``heartbeat_s`` prints a "still running" line every ``heartbeat_s`` seconds.
    """
    from mechinterp.report.progress import Progress

    return Progress(total, label=command, heartbeat_s=heartbeat_s)


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON."""
    write_text(path, json.dumps(data, indent=2, default=str))
    return path
