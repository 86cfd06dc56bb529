"""Arguments and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

__all__ = ["add_model_args", "load_model", "write_json", "out_dir"]


def add_model_args(parser: argparse.ArgumentParser, default_model: str = "zoo:toy-lm") -> None:
    """``--model``, ``--device``, ``--dtype``, ``--seed`` and ``--batch-size``."""
    parser.add_argument("--model", default=default_model, help="zoo:<name>, a local checkpoint folder, or a TL name")
    parser.add_argument("--device", default=None, help="cpu (default) or cuda")
    parser.add_argument("--dtype", default=None, help="float32 (default), bfloat16, float16")
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
    path.write_text(json.dumps(data, indent=2, default=str))
    return path
