"""``mechinterp report``: the offline HTML circuit report for a model and a task."""

from __future__ import annotations

import argparse
import time

from mechinterp.cli.common import add_model_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="write the self-contained circuit report (HTML + JSON)")
    add_model_args(parser)
    parser.add_argument("--task", default="ioi", help="task name (see `mechinterp tasks`)")
    parser.add_argument("--n", type=int, default=32, help="prompts")
    parser.add_argument("--out", default="report", help="output folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from mechinterp.report import build_report

    torch.manual_seed(args.seed)
    start = time.perf_counter()
    print(f"mechinterp report: {args.task} on {args.model}")
    page = build_report(args.model, args.task, args.out, n=args.n, seed=args.seed, device=args.device)
    print(f"wrote {page} and {page.with_suffix('.json')} in {time.perf_counter() - start:.1f}s")
    return 0
