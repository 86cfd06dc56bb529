"""``mechinterp circuit``: discover a circuit for a task and write an offline HTML report.

Writes, into ``--out``: ``circuit.json`` (scores and selected edges), ``circuit.svg`` /
``circuit.png`` (the drawn graph), ``curve.json`` (faithfulness curve, CPR, CMD),
``report.html`` (self-contained) and ``summary.json``.

Example::

    mechinterp circuit --model zoo:tracr-reverse --task tracr-reverse --method acdc --ablation zero \\
        --seq-len 3 --out out/circuit
"""

from __future__ import annotations

import argparse
import time

from mechinterp.cli.common import add_model_args, load_model, out_dir, write_json
from mechinterp.core.atomic import write_text


def add_parser(sub: argparse._SubParsersAction) -> None:
    from mechinterp.circuits import ABLATIONS, SCORERS

    parser = sub.add_parser("circuit", help="circuit discovery (EAP, EAP-IG, exact, ACDC) with an HTML report")
    add_model_args(parser, default_model="zoo:attn-only-2l")
    parser.add_argument("--task", default="induction", help="task name (mechinterp tasks)")
    parser.add_argument("--method", default="eap", choices=sorted(SCORERS), help="edge scorer")
    parser.add_argument("--ablation", default="corrupted", choices=list(ABLATIONS), help="what removed edges carry")
    parser.add_argument("--n", type=int, default=32, help="prompts")
    parser.add_argument("--seq-len", type=int, default=None, help="task seq_len (tracr: 3 reproduces ACDC's setting)")
    parser.add_argument("--corruption", default=None, help="induction task corruption: second_copy (default) or random (ACDC's)")
    parser.add_argument("--top-n", type=int, default=None, help="edges in the circuit (default: the method's own)")
    parser.add_argument("--steps", type=int, default=None, help="EAP-IG steps")
    parser.add_argument("--distance", default=None, help="ACDC distance: kl, l2, metric")
    parser.add_argument("--out", default="out/circuit", help="output folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import mechinterp
    from mechinterp.circuits import circuit_report, compare_to_reference, discover, faithfulness_curve, setup_for

    start = time.perf_counter()
    model = load_model(args)
    folder = out_dir(args.out)
    kwargs = {k: v for k, v in (("seq_len", args.seq_len), ("corruption", args.corruption)) if v is not None}
    task = mechinterp.tasks.load(args.task, model, n=args.n, seed=args.seed, **kwargs)
    options = {k: v for k, v in (("steps", args.steps), ("distance", args.distance)) if v is not None}
    setup = setup_for(model, task, args.ablation)
    circuit = discover(model, task, args.method, args.ablation, setup=setup, top_n=args.top_n, **options)
    circuit.save(folder / "circuit.json")
    circuit.save_figure(folder / "circuit.svg")
    circuit.save_figure(folder / "circuit.png")
    curve = faithfulness_curve(model, setup, task.metric, circuit)
    curve.save(folder / "curve.json")
    write_text(folder / "report.html", circuit_report(model, task, circuit, setup=setup, curve=curve))
    ref = task.ground_truth.circuit
    summary = {
        "model": args.model, "task": args.task, "method": args.method, "ablation": args.ablation,
        "n_prompts": args.n, "n_edges": circuit.n_edges, "n_graph_edges": circuit.graph.n_edges,
        "top_edges": [[s, r, v] for s, r, v in circuit.edges()[:10]],
        "cpr": curve.cpr, "cmd": curve.cmd,
        "reference": dict(compare_to_reference(circuit, ref)) if ref else None,
        "seconds": time.perf_counter() - start,
    }
    write_json(folder / "summary.json", summary)
    print(f"{args.method} on {args.task}: {circuit.n_edges}/{circuit.graph.n_edges} edges, CPR {curve.cpr:.3f}, "
          f"CMD {curve.cmd:.3f}" + (f", edge AUC {summary['reference']['auc']:.3f}" if ref else ""))
    print(f"wrote {folder}/report.html ({summary['seconds']:.1f}s)")
    return 0
