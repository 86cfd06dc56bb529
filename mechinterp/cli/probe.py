"""``mechinterp probe``: probe every layer of a model for the labels in a CSV of ``text,label``.

With no ``--csv``, the concept label of ``--task`` is probed on its prompts (``ioi``: which
name comes first; ``sentiment``: polarity; ``facts``: continent; ``greater-than``: the year).
"""

from __future__ import annotations

import argparse
import time

from mechinterp.core.atomic import write_text
from mechinterp.cli.common import add_model_args, add_task_arg, check_out, load_model, load_task, steps, write_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("probe", help="linear probes by layer on a CSV of text,label (with controls)")
    add_model_args(parser, seed_help="seed of the train/test split, the control task and the random directions (and of "
                                     "the task's prompt draw without --csv)")
    parser.add_argument("--csv", default=None, help="CSV with a header: text,label[,type] (default: the concept label of --task)")
    add_task_arg(parser, " whose concept label is probed when --csv is not given")
    parser.add_argument("--n", type=int, default=64, help="prompts of --task (without --csv)")
    parser.add_argument("--site", default="resid_post", help="site to probe (resid_post, attn_out, mlp_out, z, ...)")
    parser.add_argument("--layers", default=None, help="comma-separated layers (default: all)")
    parser.add_argument("--position", default="last", help="last, all, an index, or a token that every prompt contains")
    parser.add_argument("--probe", default=None, choices=["logistic", "mass-mean", "ridge"], help="default: logistic / ridge")
    parser.add_argument("--cv", type=int, default=5, help="k-fold cross-validation folds (0: one 25%% held-out split)")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic probe")
    parser.add_argument("--memory-budget", default=None, help="activations kept in memory, e.g. 2GB (the rest spills to disk)")
    parser.add_argument("--out", default="out/probe", help="output folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mechinterp import probes
    from mechinterp.viz import html_page

    from mechinterp.errors import MechinterpError
    from mechinterp.report.sections import PROBE_LABELS, probe_verdict

    start = time.perf_counter()
    folder = check_out(args.out)
    texts = labels = types = None
    if args.csv is not None:
        texts, labels, types = probes.read_labelled_csv(args.csv)
    elif args.task not in PROBE_LABELS:
        raise MechinterpError(f"--task {args.task} has no concept label to probe (tasks with one: {sorted(PROBE_LABELS)}); "
                              "pass --csv with text,label rows.")
    layers = [int(x) for x in args.layers.split(",")] if args.layers else None
    position: object = args.position
    if args.position.lstrip("-").isdigit():
        position = int(args.position)
    progress = steps("probe", 2)
    with progress.step("loading and caching activations", args.model):
        model = load_model(args)
        options = dict(site=args.site, layers=layers, position=position, batch_size=args.batch_size,
                       memory_budget=args.memory_budget)
        if texts is None:
            task = load_task(args.task, model, n=args.n, seed=args.seed)
            data = probes.from_task(model, task, PROBE_LABELS[args.task], **options)
            source = f"task {args.task}, label {PROBE_LABELS[args.task]}"
        else:
            data = probes.collect_activations(model, texts, labels, types=types, **options)
            source = str(args.csv)
    with progress.step("probe sweep", f"{data.n} examples"):
        result = probes.probe_sweep(data, probe=args.probe, cv=args.cv or None, C=args.C, seed=args.seed)
    result.save(folder / "sweep.json")
    result.to_dataframe().to_csv(folder / "sweep.csv", index=False)
    write_text(folder / "sweep.html", html_page(f"probe sweep: {source}", result.to_html()))
    layer, pos, best = result.best()
    verdict = probe_verdict(result)
    write_json(folder / "summary.json", {"model": args.model, "data": source, "n": data.n, "classes": result.classes,
                                         "best_layer": layer, "best_position": pos, "best_score": best, "metric": result.metric,
                                         "above_chance": verdict["above_chance"], "baseline": verdict["baseline"],
                                         "verdict": verdict["sentence"]})
    print(f"{args.model}: {data.n} examples, {len(result.layers)} layer(s) x {len(result.positions)} position(s), "
          f"{result.split}, in {time.perf_counter() - start:.1f}s")
    df = result.to_dataframe()
    for row in df.itertuples(index=False):
        print(f"  layer {row.layer:>2} pos {row.position:<6} {result.metric} {row[2]:.3f} "
              f"[{row.ci_low:.3f}, {row.ci_high:.3f}]  control {row.control:.3f}  selectivity {row.selectivity:+.3f}"
              f"  random {row.random_direction:.3f}  majority {row.majority:.3f}")
    print(f"verdict: {verdict['sentence']}")
    print(f"wrote {folder / 'sweep.json'}, sweep.csv, sweep.html and summary.json")
    return 0
