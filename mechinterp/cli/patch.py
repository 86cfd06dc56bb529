"""``mechinterp patch``: a patching sweep on a task, written to a folder.

Writes, into ``--out``: ``result.json`` (the :class:`~mechinterp.patching.PatchResult`),
``result.csv`` (one row per sweep point), ``result.png`` (the heatmap), ``index.html``
(heatmap and top entries, offline) and ``summary.json``; prints the top entries.

A sweep by position needs prompts of one token length (a position is the same word slot
in every prompt): when the task's prompts differ in length, only those of the most common
length are patched and the command says how many were left out (``--all-lengths`` keeps
them all, with padding columns in the result). Causal tracing restores a window of layers
around each layer: by default a fifth of the model's depth for ``mlp``/``attn`` (ROME's 10
of 48 layers), 1 for ``resid``.

Examples::

    mechinterp patch --model zoo:toy-lm --task ioi --site resid_pre --by position --out out/patch
    mechinterp patch --model zoo:toy-lm --task ioi --site z --by head --direction noising --out out/heads
    mechinterp patch --model zoo:toy-lm --task ioi --method path --receivers resid_final --out out/path
    mechinterp patch --model zoo:toy-lm --task facts --method trace --site mlp --out out/trace
    mechinterp patch --model zoo:attn-only-2l --task induction --method attribution --site z --by head --out out/atp
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from mechinterp.core.atomic import save_figure, write_text
from mechinterp.cli.common import (add_distributed_arg, add_model_args, add_task_arg, check_out, did_you_mean, distributed_run,
                                   load_model, load_task, steps, write_json)

METHODS = ("activation", "path", "trace", "attribution", "attribution-ig")
#: what causal tracing restores (``--site`` with ``--method trace``)
TRACE_SITES = ("resid", "mlp", "attn")
POSITION_AXES = ("pos", "position", "head_position", "dest_src", "dest", "src")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("patch", help="activation / path patching, causal tracing, attribution patching on a task",
                            description=__doc__.split("\n\n")[0])
    add_model_args(parser, seed_help="seed of the task's prompt draw, of resample ablation and of the tracing noise")
    add_task_arg(parser)
    parser.add_argument("--n", "--n-prompts", dest="n", type=int, default=32,
                        help="prompts (under torchrun spell it --n-prompts: torchrun reads --n as one of its own options)")
    parser.add_argument("--method", default="activation", choices=METHODS, help="what to run")
    parser.add_argument("--site", default=None,
                        help="activation/attribution: resid_pre (default), attn_out, mlp_out, z, q, k, v, pattern, ...; "
                             "trace: resid (default), mlp or attn")
    parser.add_argument("--by", default="position", help="layer, position, head, head_position, dest_src, or axes joined by commas")
    parser.add_argument("--direction", default="denoising", choices=["denoising", "noising"], help="patch clean into corrupted "
                        "(denoising) or corrupted into clean (noising)")
    parser.add_argument("--ablation", default=None, choices=["zero", "mean", "resample"],
                        help="patch an ablation instead of the other run (default: none, the corrupted/clean run)")
    parser.add_argument("--receivers", default="resid_final", help="path patching receivers, comma-separated (resid_final, L3H0.q, ...)")
    parser.add_argument("--window", type=int, default=None,
                        help="causal tracing window in layers (default: 1 for resid, max(1, n_layers / 5) for mlp/attn)")
    parser.add_argument("--all-lengths", action="store_true",
                        help="patch by position on prompts of every length (pad columns included); default: only the "
                             "prompts of the most common length")
    parser.add_argument("--raw", action="store_true", help="report the raw metric, not normalised")
    parser.add_argument("--out", default="out/patch", help="output folder")
    add_distributed_arg(parser)
    parser.set_defaults(handler=run)


def trace_window(n_layers: int, kind: str) -> int:
    """The default causal-tracing window for a model of ``n_layers``: 1 for ``resid``, else a fifth of the depth."""
    return 1 if kind == "resid" else max(1, round(n_layers / 5))


def _check_site(args: argparse.Namespace) -> str:
    from mechinterp.errors import MechinterpError

    if args.method == "trace":
        site = args.site or "resid"
        if site not in TRACE_SITES:
            raise MechinterpError(f"--site {site!r} cannot be traced.{did_you_mean(site, TRACE_SITES)} "
                                  f"Causal tracing restores {', '.join(TRACE_SITES)}: pass --site resid, mlp or attn.")
        return site
    return args.site or "resid_pre"


def _one_length(task: Any, by: Any, method: str, all_lengths: bool) -> Any:
    """The prompts of the most common length when a by-position sweep meets prompts of several lengths."""
    axes = (by,) if isinstance(by, str) else tuple(by)
    by_position = method == "trace" or any(a in POSITION_AXES for a in axes)
    lengths = task.lengths
    if not by_position or bool((lengths == lengths[0]).all()):
        return task
    common = int(lengths.mode().values)
    keep = (lengths == common).nonzero().flatten()
    if all_lengths:
        print(f"warning: the prompts have {len(set(lengths.tolist()))} token lengths ({int(lengths.min())}-{int(lengths.max())}); "
              "patching by position with --all-lengths puts shorter prompts' padding in the same columns as longer "
              "prompts' words: read positions past a prompt's length as padding", file=sys.stderr)
        return task
    if len(keep) < 2 or task.metric_fn is not None or task.accuracy_fn is not None:
        print(f"warning: the prompts have several token lengths; positions past a prompt's length are padding "
              f"(only {len(keep)} prompt(s) have the common length {common}, so all are kept)", file=sys.stderr)
        return task
    print(f"note: patching by position needs one token length; using the {len(keep)} of {len(task)} prompts of length "
          f"{common} (--all-lengths keeps all, with padding columns)", file=sys.stderr)
    return task.subset(keep)


def run(args: argparse.Namespace) -> int:
    from mechinterp.errors import DistributedError

    if args.distributed and args.method != "activation":
        raise DistributedError(f"--distributed shards --method activation (activation patching); --method {args.method} "
                               "runs in one process: drop --distributed.")
    with distributed_run(args) as ctx:
        return _run(args, ctx)


def _run(args: argparse.Namespace, ctx: Any) -> int:
    from mechinterp import patching as P
    from mechinterp.viz import html_page

    start = time.perf_counter()
    site = _check_site(args)
    folder = check_out(args.out)
    progress = steps("patch", 2)
    with progress.step("loading", args.model):
        model = load_model(args)
        task = load_task(args.task, model, n=args.n, seed=args.seed)
    by = tuple(args.by.split(",")) if "," in args.by else args.by
    task = _one_length(task, by, args.method, args.all_lengths)
    norm = not args.raw
    window = args.window
    if args.method == "trace" and window is None:
        window = trace_window(model.cfg.n_layers, site)
    with progress.step(f"{args.method} patching", f"{site} on {len(task)} prompts" + (f", window {window}" if window else "")):
        if args.method == "activation":
            result = P.activation_patch(model, task, site=site, by=by, direction=args.direction, ablation=args.ablation,
                                        normalise=norm)
        elif args.method == "path":
            result = P.path_patch(model, task, receivers=args.receivers.split(","), direction=args.direction, normalise=norm)
        elif args.method == "trace":
            result = P.causal_trace(model, task, kind=site, window=window, normalise=norm, seed=args.seed)
        else:
            result = P.attribution_patch(
                model, task, sites=site, by=by, direction=args.direction, normalise=norm,
                ig_steps=8 if args.method == "attribution-ig" else None,
            )
    if ctx is not None and not ctx.is_main:  # every rank holds the whole result; rank 0 writes it
        return 0
    result.save(folder / "result.json")
    result.to_dataframe().to_csv(folder / "result.csv", index=False)
    save_figure(result.plot(), folder / "result.png", dpi=110, bbox_inches="tight")
    lengths = sorted(set(task.lengths.tolist()))
    about = (f"<p>{len(task)} prompts of {args.task} on {args.model}"
             + (f" (of {args.n} drawn: those of the most common token length, {lengths[0]})" if len(task) < args.n else "")
             + (f", token lengths {lengths[0]}-{lengths[-1]}: positions past a prompt's length are padding" if len(lengths) > 1 else "")
             + f". Base (corrupted) metric {result.base_value:.4g}"
             + (f", target (clean) metric {result.target_value:.4g}" if result.target_value is not None else "")
             + (" on these prompts; values normalised: 0 = base, 1 = target." if result.normalised else " on these prompts.")
             + "</p>")
    write_text(folder / "index.html", html_page(f"mechinterp patch: {args.task}",
                                                 f"<h1>{args.task}: {args.method} patching</h1>{about}" + result.to_html()))
    top = [{**labels, "value": value} for labels, value in result.top(5)]
    write_json(folder / "summary.json", {
        "model": args.model, "task": args.task, "n": len(task), "method": result.method, "site": result.site,
        "window": window, "dims": list(result.dims), "shape": list(result.shape), "normalised": result.normalised,
        "base_value": result.base_value, "target_value": result.target_value, "top": top,
        "seconds": round(time.perf_counter() - start, 2), "processes": 1 if ctx is None else ctx.world_size,
    })
    print(f"{result.method} patching of {result.site} on {args.task} ({len(task)} prompts), dims {' x '.join(result.dims)}:")
    for row in top:
        labels = " ".join(f"{k}={v}" for k, v in row.items() if k != "value")
        print(f"  {labels:<30} {row['value']:+.3f}")
    print(f"wrote {folder}/index.html, result.json, result.csv, result.png ({time.perf_counter() - start:.1f} s)")
    return 0
