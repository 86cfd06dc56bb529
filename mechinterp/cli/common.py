"""Arguments and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from mechinterp.core.atomic import write_text

__all__ = ["add_model_args", "load_model", "write_json", "out_dir", "dtype_arg", "device_arg", "DTYPES"]

#: accepted ``--dtype`` spellings -> the name passed to :func:`mechinterp.load`
DTYPES = {
    "fp32": "float32", "float32": "float32", "f32": "float32",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp16": "float16", "float16": "float16", "f16": "float16", "half": "float16",
}


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


def add_model_args(parser: argparse.ArgumentParser, default_model: str = "zoo:toy-lm") -> None:
    """``--model``, ``--device``, ``--dtype``, ``--seed`` and ``--batch-size``."""
    parser.add_argument("--model", default=default_model, help="zoo:<name>, a local checkpoint folder, or a TL name")
    parser.add_argument("--device", type=device_arg, default=None, metavar="{cpu,cuda}", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--dtype", type=dtype_arg, default=None, metavar="{fp32,bf16,fp16}",
                        help="weights and activations: fp32 (default), bf16 or fp16 (float32/bfloat16/float16 too)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for generated prompts")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per forward pass")


def load_model(args: argparse.Namespace) -> Any:
    """Seed everything, then load ``args.model``."""
    import torch

    import mechinterp

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    return mechinterp.load(args.model, device=args.device, dtype=args.dtype)


def out_dir(path: str | Path) -> Path:
    """Create and return the output folder."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON."""
    return write_text(path, json.dumps(data, indent=2, default=str))
