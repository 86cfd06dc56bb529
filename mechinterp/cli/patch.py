"""``mechinterp patch``: a patching sweep on a task, written to a folder.

Writes, into ``--out``: ``result.json`` (the :class:`~mechinterp.patching.PatchResult`),
``result.csv`` (one row per sweep point), ``result.png`` (the heatmap), ``index.html``
(heatmap and top entries, offline) and ``summary.json``; prints the top entries.

Examples::

    mechinterp patch --model zoo:toy-lm --task ioi --site resid_pre --by position --out out/patch
    mechinterp patch --model zoo:toy-lm --task ioi --site z --by head --direction noising --out out/heads
    mechinterp patch --model zoo:toy-lm --task ioi --method path --receivers resid_final --out out/path
    mechinterp patch --model zoo:toy-lm --task facts --method trace --site mlp --out out/trace
    mechinterp patch --model zoo:attn-only-2l --task induction --method attribution --site z --by head --out out/atp
"""

from __future__ import annotations

import argparse
import time

from mechinterp.cli.common import add_model_args, load_model, out_dir, write_json
from mechinterp.core.atomic import save_figure, write_text

METHODS = ("activation", "path", "trace", "attribution", "attribution-ig")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("patch", help="activation / path patching, causal tracing, attribution patching on a task")
    add_model_args(parser)
    parser.add_argument("--task", default="ioi", help="task name (see `mechinterp tasks`)")
    parser.add_argument("--n", type=int, default=32, help="prompts")
    parser.add_argument("--method", default="activation", choices=METHODS)
    parser.add_argument("--site", default="resid_pre", help="resid_pre, attn_out, mlp_out, z, q, k, v, pattern, ... (trace: resid, mlp, attn)")
    parser.add_argument("--by", default="position", help="layer, position, head, head_position, dest_src, or axes joined by commas")
    parser.add_argument("--direction", default="denoising", choices=["denoising", "noising"])
    parser.add_argument("--ablation", default=None, choices=["zero", "mean", "resample"])
    parser.add_argument("--receivers", default="resid_final", help="path patching receivers, comma-separated (resid_final, L3H0.q, ...)")
    parser.add_argument("--window", type=int, default=None, help="causal tracing window (layers)")
    parser.add_argument("--raw", action="store_true", help="report the raw metric, not normalised")
    parser.add_argument("--out", default="out/patch", help="output folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import mechinterp
    from mechinterp import patching as P
    from mechinterp.viz import html_page

    start = time.perf_counter()
    model = load_model(args)
    folder = out_dir(args.out)
    task = mechinterp.tasks.load(args.task, model, n=args.n, seed=args.seed)
    by = tuple(args.by.split(",")) if "," in args.by else args.by
    norm = not args.raw
    if args.method == "activation":
        result = P.activation_patch(model, task, site=args.site, by=by, direction=args.direction, ablation=args.ablation, normalise=norm)
    elif args.method == "path":
        result = P.path_patch(model, task, receivers=args.receivers.split(","), direction=args.direction, normalise=norm)
    elif args.method == "trace":
        site = args.site if args.site in ("resid", "mlp", "attn") else "resid"
        result = P.causal_trace(model, task, kind=site, window=args.window, normalise=norm, seed=args.seed)
    else:
        result = P.attribution_patch(
            model, task, sites=args.site, by=by, direction=args.direction, normalise=norm,
            ig_steps=8 if args.method == "attribution-ig" else None,
        )
    result.save(folder / "result.json")
    result.to_dataframe().to_csv(folder / "result.csv", index=False)
    save_figure(result.plot(), folder / "result.png", dpi=110, bbox_inches="tight")
    write_text(folder / "index.html", html_page(f"mechinterp patch: {args.task}", f"<h1>{args.task}: {args.method} patching</h1>" + result.to_html()))
    top = [{**labels, "value": value} for labels, value in result.top(5)]
    write_json(folder / "summary.json", {
        "model": args.model, "task": args.task, "n": args.n, "method": result.method, "site": result.site,
        "dims": list(result.dims), "shape": list(result.shape), "normalised": result.normalised,
        "base_value": result.base_value, "target_value": result.target_value, "top": top,
        "seconds": round(time.perf_counter() - start, 2),
    })
    print(f"{result.method} patching of {result.site} on {args.task} ({args.n} prompts), dims {' x '.join(result.dims)}:")
    for row in top:
        labels = " ".join(f"{k}={v}" for k, v in row.items() if k != "value")
        print(f"  {labels:<30} {row['value']:+.3f}")
    print(f"wrote {folder}/index.html, result.json, result.csv, result.png ({time.perf_counter() - start:.1f} s)")
    return 0
