"""``mechinterp circuit``: discover a circuit for a task and write an offline HTML report.

The defaults give the recommended answer: EAP-IG (inputs) edge scores with the corrupted
ablation (on ``induction``, the ``random`` corruption, which changes queries, keys and
values; the task's default ``second_copy`` hides K-composition from edge patching), and a
pruned circuit: the fewest top edges whose faithfulness reaches ``--faithfulness-target``
(0.8), searched up to ``--max-fraction`` (25%) of the edges — printed with its faithfulness.
``--top-n`` fixes the size instead.

Writes, into ``--out``: ``circuit.json`` (scores and the selected edges), ``graph.html``
(the interactive circuit: hover, click, a slider over sizes with their faithfulness),
``circuit.svg`` / ``circuit.png`` (the drawn graph), ``curve.json`` (faithfulness curve,
CPR, CMD), ``report.html`` (self-contained) and ``summary.json``.

Example::

    mechinterp circuit --model zoo:attn-only-2l --task induction --method exact --out out/circuit
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Any

from mechinterp.core.atomic import write_text
from mechinterp.cli.common import (add_distributed_arg, add_model_args, add_task_arg, check_out, distributed_run, load_model,
                                   load_task, steps, write_json)

#: the corruption circuit discovery should use, where a task has several (see the task's docstring)
CIRCUIT_CORRUPTION = {"induction": "random"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    from mechinterp.circuits import ABLATIONS, SCORERS

    parser = sub.add_parser("circuit", help="circuit discovery (EAP, EAP-IG, exact, ACDC) with an HTML report",
                            description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    add_task_arg(parser)
    parser.add_argument("--method", default="eap-ig-inputs", choices=sorted(SCORERS), help="edge scorer")
    parser.add_argument("--ablation", default="corrupted", choices=list(ABLATIONS), help="what removed edges carry")
    parser.add_argument("--n", "--n-prompts", dest="n", type=int, default=32,
                        help="prompts (under torchrun spell it --n-prompts: torchrun reads --n as one of its own options)")
    parser.add_argument("--seq-len", type=int, default=None, help="task seq_len (tracr: 3 reproduces ACDC's setting)")
    parser.add_argument("--corruption", default=None,
                        help="task corruption (default: the one recommended for circuits: 'random' on induction, "
                             "the task's own elsewhere)")
    parser.add_argument("--top-n", type=int, default=None, help="edges in the circuit (default: chosen by --faithfulness-target)")
    parser.add_argument("--faithfulness-target", type=float, default=0.8,
                        help="keep the fewest top edges whose faithfulness reaches this (1 = the whole model)")
    parser.add_argument("--max-fraction", type=float, default=0.25, help="largest circuit tried, as a fraction of the edges")
    parser.add_argument("--steps", type=int, default=None, help="EAP-IG steps (default: the method's)")
    parser.add_argument("--distance", default=None, help="ACDC distance: kl, l2, metric (default: the method's)")
    parser.add_argument("--out", default="out/circuit", help="output folder")
    add_distributed_arg(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Edge scoring is sharded over the ranks with ``--distributed``; rank 0 then sizes the circuit and writes the report."""
    with distributed_run(args) as ctx, contextlib.ExitStack() as rest:
        return _run(args, ctx, rest)


def _run(args: argparse.Namespace, ctx: Any, rest: contextlib.ExitStack) -> int:
    import torch

    from mechinterp.circuits import circuit_report, compare_to_reference, discover, faithfulness, faithfulness_curve, setup_for
    from mechinterp.circuits.discover import BATCHABLE
    from mechinterp.errors import MechinterpError
    from mechinterp.report.graph import graph_html
    from mechinterp.report.pruning import prune
    from mechinterp.viz import escape, html_page

    start = time.perf_counter()
    if args.top_n is not None and args.top_n < 1:
        raise MechinterpError(f"--top-n must be at least 1 (got {args.top_n}).")
    if not 0 < args.max_fraction <= 1:
        raise MechinterpError(f"--max-fraction must be in (0, 1] (got {args.max_fraction}).")
    folder = check_out(args.out)
    progress = steps("circuit", 4)
    with progress.step("loading", f"{args.model}, task {args.task}"):
        model = load_model(args)
        corruption = args.corruption or CIRCUIT_CORRUPTION.get(args.task)
        kwargs = {k: v for k, v in (("seq_len", args.seq_len), ("corruption", corruption)) if v is not None}
        task = load_task(args.task, model, n=args.n, seed=args.seed, **kwargs)
        setup = setup_for(model, task, args.ablation) if ctx is None else None  # sharded: each rank prepares its block
    options = {k: v for k, v in (("steps", args.steps), ("distance", args.distance)) if v is not None}
    with progress.step(f"scoring edges ({args.method})", f"{len(task)} prompts"
                       + ("" if ctx is None else f" over {ctx.world_size} processes")):
        scored = discover(model, task, args.method, args.ablation, setup=setup, **options,
                          **({"batch_size": args.batch_size} if args.method in BATCHABLE else {}))
    if ctx is not None:
        if not ctx.is_main:  # every rank holds the scores; rank 0 goes on alone, in one process
            return 0
        from mechinterp.core.distributed import local

        rest.enter_context(local())
        setup = setup_for(model, task, args.ablation)
    with progress.step("choosing the circuit's size", "by faithfulness" if args.top_n is None else f"top {args.top_n}"):
        if args.top_n is None:
            choice = prune(model, setup, task.metric, scored, target=args.faithfulness_target, max_fraction=args.max_fraction)
            size, sizes, faith = choice.size, choice.sizes, choice.curve
        else:
            size = min(args.top_n, scored.graph.n_edges)
            sizes = sorted({max(1, round(size * f)) for f in (0.1, 0.25, 0.5, 0.75)} | {size})
            faith = [float(x) for x in faithfulness(model, setup, task.metric,
                                                    torch.stack([scored.top_n(k).selected for k in sizes])).tolist()]
            choice = None
        circuit = scored.top_n(size)
        f_size = faith[sizes.index(size)]
    with progress.step("faithfulness curve and report"):
        circuit.save(folder / "circuit.json")
        circuit.save_figure(folder / "circuit.svg")
        circuit.save_figure(folder / "circuit.png")
        curve = faithfulness_curve(model, setup, task.metric, scored)
        curve.save(folder / "curve.json")
        write_text(folder / "report.html", circuit_report(model, task, circuit, setup=setup, curve=curve))
        shown = scored.top_n(max(sizes)).edges()
        graph = graph_html(shown, model.cfg.n_heads, sizes=sizes, faithfulness=faith, initial=size)
        title = f"{args.method} circuit on {args.task} ({args.model})"
        write_text(folder / "graph.html", html_page(title, f"<h1>{escape(title)}</h1><p>{len(circuit.edges())} of "
                                                             f"{scored.graph.n_edges} edges, faithfulness {f_size:.3f}. "
                                                             f"Move the slider for other sizes.</p>{graph}"))
    ref = task.ground_truth.circuit
    summary = {
        "model": args.model, "task": args.task, "corruption": corruption, "method": args.method, "ablation": args.ablation,
        "n_prompts": len(task), "n_edges": circuit.n_edges, "n_graph_edges": circuit.graph.n_edges,
        "faithfulness": f_size, "faithfulness_target": args.faithfulness_target if args.top_n is None else None,
        "target_reached": choice.reached if choice else None, "sizes_tried": dict(zip(sizes, faith)),
        "top_edges": [[s, r, v] for s, r, v in circuit.edges()[:10]],
        "cpr": curve.cpr, "cmd": curve.cmd,
        "reference": dict(compare_to_reference(circuit, ref)) if ref else None,
        "seconds": time.perf_counter() - start, "processes": 1 if ctx is None else ctx.world_size,
    }
    write_json(folder / "summary.json", summary)
    print(f"{args.method} on {args.task} ({args.ablation} ablation" + (f", {corruption} corruption" if corruption else "")
          + f", {len(task)} prompts): circuit of {circuit.n_edges}/{circuit.graph.n_edges} edges "
          f"({100 * circuit.n_edges / circuit.graph.n_edges:.1f}%), faithfulness {f_size:.3f}"
          + (f" (target {args.faithfulness_target:g}{'' if choice.reached else ' NOT reached: the most faithful size tried'})"
             if choice else "")
          + f"; curve CPR {curve.cpr:.3f}, CMD {curve.cmd:.3f}" + (f", edge AUC {summary['reference']['auc']:.3f}" if ref else ""))
    for s, r, v in circuit.edges()[:5]:
        print(f"  {s:>8} -> {r:<10} {v:+.4f}")
    print(f"wrote {folder}/graph.html, report.html, circuit.json, circuit.svg, summary.json ({summary['seconds']:.1f}s)")
    return 0
