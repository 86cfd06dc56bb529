"""``mechinterp demo``: a quick tour on a zoo model — tasks, accuracy, metrics, the cache."""

from __future__ import annotations

import argparse
import time

from mechinterp.core.atomic import write_text
from mechinterp.cli.common import add_model_args, check_out, load_model, write_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run every task on a model and write a short summary")
    add_model_args(parser, seed_help="seed of every task's prompt draw")
    parser.add_argument("--n", type=int, default=64, help="prompts per task")
    parser.add_argument("--out", default="out/demo", help="output folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    import mechinterp
    from mechinterp.viz import html_page, table_html

    start = time.perf_counter()
    folder = check_out(args.out)
    model = load_model(args)
    rows = []
    for name in mechinterp.tasks.names():
        if name.startswith("tracr-") and getattr(model, "zoo_name", None) != name:
            continue  # compiled programs: their tasks only mean something on their own model
        try:
            task = mechinterp.tasks.load(name, model, n=args.n, seed=args.seed)
        except mechinterp.MechinterpError:
            continue
        with torch.no_grad():
            clean = model(task.clean_tokens)
            corrupted = model(task.corrupted_tokens)
        cache = mechinterp.SharedCache(model, task, positions="last", batch_size=args.batch_size, progress=False)
        resid = cache.stack("resid_post")
        rows.append(
            {
                "task": name,
                "prompts": len(task),
                "accuracy": task.accuracy(clean),
                "metric clean": task.metric(clean).mean().item(),
                "metric corrupted": task.metric(corrupted).mean().item(),
                "final resid norm": resid[-1].norm(dim=-1).mean().item(),
            }
        )
    write_json(folder / "summary.json", {"model": args.model, "tasks": rows})
    body = f"<h1>mechinterp demo</h1><p>Model <code>{args.model}</code></p>" + table_html(rows)
    write_text(folder / "summary.html", html_page("mechinterp demo", body))
    print(f"{args.model}: {len(rows)} task(s) in {time.perf_counter() - start:.1f}s")
    for row in rows:
        print(
            f"  {row['task']:<18} accuracy {row['accuracy']:.3f}   metric clean {row['metric clean']:+.3f}"
            f"   corrupted {row['metric corrupted']:+.3f}"
        )
    print(f"wrote {folder / 'summary.json'} and {folder / 'summary.html'}")
    return 0
