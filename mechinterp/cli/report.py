"""``mechinterp report``: the offline HTML circuit report for a model and a task.

Progress lines (one per section start and end, with elapsed times) go to stderr; the
sections are sized to ``--budget`` seconds (see :mod:`mechinterp.report.plan`). Exit code 0
when every section ran, 1 when the page was written but some section failed (the page
shows the error), 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
import time

from mechinterp.cli.common import add_model_args, add_task_arg, check_names, check_out
from mechinterp.report.plan import DEFAULT_BUDGET_S


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="write the self-contained circuit report (HTML + JSON)")
    add_model_args(parser, seed_help="seed of the task's prompt draw and of every seeded method in the report")
    add_task_arg(parser)
    parser.add_argument("--n", type=int, default=None, help="prompts to load (default 32); sections may use fewer")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                        help=f"seconds the sections may take together (default {DEFAULT_BUDGET_S:.0f}); sweeps shrink to fit; "
                             "0 = no limit")
    parser.add_argument("--only-solved", action="store_true", help="keep only prompts the model answers correctly (top-1)")
    parser.add_argument("--out", default="report", help="output folder (report.html, report.json)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from mechinterp.errors import MechinterpError
    from mechinterp.report import build_report

    if args.n is not None and args.n < 2:
        raise MechinterpError(f"--n must be at least 2 (got {args.n}).")
    if args.budget < 0:
        raise MechinterpError(f"--budget must be >= 0 seconds (got {args.budget}); 0 means no limit.")
    check_names(args)
    check_out(args.out)  # before minutes of work, not after
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    print(f"mechinterp report: {args.task} on {args.model}")
    page = build_report(args.model, args.task, args.out, n=args.n, seed=args.seed, device=args.device, dtype=args.dtype,
                        budget_s=args.budget or None, only_solved=args.only_solved)
    errors = json.loads(page.with_suffix(".json").read_text()).get("errors", {})
    print(f"wrote {page} and {page.with_suffix('.json')} in {time.perf_counter() - start:.1f}s")
    if errors:
        print(f"{len(errors)} section(s) failed (shown in the page): " + "; ".join(f"{k}: {v}" for k, v in errors.items()),
              file=sys.stderr)
        return 1
    return 0
