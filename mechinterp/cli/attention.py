"""``mechinterp attention``: attention views, head scores and rollout maps for a prompt, into a folder.

Writes, into ``--out``:

* ``patterns.html`` — every layer's heads as interactive circuitsvis views (offline);
* ``patterns_grid.png`` / ``.svg`` — the static layer × head grid;
* ``head_scores.json`` / ``.html`` / ``.png`` — previous-token, induction, duplicate-token
  and first-token scores on generated probe sequences, and on the prompt
  (``head_scores_prompt.json``);
* ``rollout.json``, ``gradient_rollout.json``, ``flow.json`` (short prompts only) and
  ``maps.html`` with their heatmaps and per-token scores;
* ``summary.json`` and ``index.html``.

Example::

    mechinterp attention --model zoo:attn-only-2l --prompt "t1 t2 t3 t4 t1 t2 t3" --out out/attention

With no ``--prompt``, the first prompt of ``--task`` (default ``ioi``) written for the model is used.
"""

from __future__ import annotations

import argparse
import time

from mechinterp.core.atomic import save_figure, write_text
from mechinterp.cli.common import add_model_args, add_task_arg, check_out, load_model, load_task, steps, write_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("attention", help="attention views, head scores and rollout maps for a prompt")
    add_model_args(parser, seed_help="seed of the generated head-detection probe sequences (and of the task's prompt "
                                     "draw when --prompt is not given)")
    parser.add_argument("--prompt", default=None, help="the text prompt to analyse (default: the first prompt of --task)")
    add_task_arg(parser, " whose first prompt is analysed when --prompt is not given")
    parser.add_argument("--out", default="out/attention", help="output folder")
    parser.add_argument("--query", type=int, default=-1, help="output position for the per-token scores (default last)")
    parser.add_argument("--target", default=None, help="single-token target for gradient rollout (default: top prediction)")
    parser.add_argument("--head-fusion", default="mean", choices=["mean", "max", "min"], help="rollout head fusion")
    parser.add_argument("--n-probes", type=int, default=32, help="probe sequences for head detection")
    parser.add_argument("--max-flow-tokens", type=int, default=24, help="skip attention flow above this many tokens")
    parser.add_argument(
        "--sink", default="none",
        help="attention sink to exclude from rollout, flow, gradient rollout and head scores: 'none' (default), "
        "'first' (recommended on pretrained models, where the first token takes most attention) or a position",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mechinterp import attention as at
    from mechinterp.errors import MechinterpError
    from mechinterp.viz import escape, html_page

    start = time.perf_counter()
    sink = None if args.sink == "none" else "first" if args.sink == "first" else _position(args.sink)
    folder = check_out(args.out)
    progress = steps("attention", 4)
    with progress.step("loading", args.model):
        model = load_model(args)
        if args.prompt is None:
            args.prompt = load_task(args.task, model, n=1, seed=args.seed).clean_prompts[0]
            progress.note(f"no --prompt: using the first {args.task} prompt {args.prompt!r}")

    with progress.step("attention patterns"):
        pats = at.attention_patterns(model, args.prompt)
        pats.save(folder / "patterns.json")
        write_text(folder / "patterns.html", html_page("Attention patterns", "<h1>Attention patterns</h1>" + pats.to_html()))
        fig = pats.plot()
        save_figure(fig, folder / "patterns_grid.svg", bbox_inches="tight")
        at.save_figure(fig, folder / "patterns_grid.png")

    with progress.step("head scores", f"{args.n_probes} probe sequences"):
        probes = at.head_scores(model, n_probes=args.n_probes, seed=args.seed, batch_size=args.batch_size, sink=sink)
        probes.save(folder / "head_scores.json")
        write_text(folder / "head_scores.html", html_page("Head scores", "<h1>Head scores</h1>" + probes.to_html()))
        at.save_figure(probes.plot(), folder / "head_scores.png")
        on_prompt = at.head_scores(model, [args.prompt], sink=sink)
        on_prompt.save(folder / "head_scores_prompt.json")

    with progress.step("rollout maps"):
        maps = [at.attention_rollout(model, [args.prompt], head_fusion=args.head_fusion, query=args.query, sink=sink)]
        target = args.target
        maps.append(at.gradient_rollout(model, [args.prompt], target=target, query=args.query, sink=sink))
        n_tokens = len(pats.str_tokens)
        if n_tokens <= args.max_flow_tokens:
            try:
                maps.append(at.attention_flow(model, [args.prompt], head_fusion=args.head_fusion, queries=[args.query],
                                              query=args.query, max_positions=args.max_flow_tokens, sink=sink))
            except MechinterpError as err:  # reported, not fatal: the other views are written
                print(f"attention flow skipped: {err}")
        for m in maps:
            m.save(folder / f"{m.method}.json")
        write_text(folder / "maps.html", html_page("Rollout maps", "<h1>Rollout maps</h1>" + "".join(m.to_html() for m in maps)))

    top = {kind: probes.ranking(kind)[:3] for kind in probes.kinds}
    summary = {
        "model": args.model,
        "prompt": args.prompt,
        "tokens": pats.str_tokens,
        "top_heads_on_probes": {k: [[h, round(s, 4)] for h, s in v] for k, v in top.items()},
        "per_token_scores": {m.method: m.scores(0).tolist() for m in maps},
        "files": sorted(p.name for p in folder.iterdir()) + ["summary.json", "index.html"],
    }
    write_json(folder / "summary.json", summary)
    links = "".join(f"<li><a href='{escape(n)}'>{escape(n)}</a></li>" for n in summary["files"])
    write_text(folder / "index.html", 
        html_page("mechinterp attention", f"<h1>Attention: {escape(args.model)}</h1><p>{escape(args.prompt)}</p><ul>{links}</ul>")
    )
    print(f"{args.model}: {n_tokens} tokens, {len(maps)} map(s) in {time.perf_counter() - start:.1f}s")
    for kind, heads in top.items():
        print(f"  {kind:<16} " + "  ".join(f"{h} {s:.2f}" for h, s in heads))
    for m in maps:
        best = int(m.scores(0).argmax())
        print(f"  {m.method:<17} most relevant token: {pats.str_tokens[best]!r} (position {best})")
        if m.sink_note(0):
            print(f"  {'':<17} {m.sink_note(0)}")
    print(f"wrote {len(summary['files'])} files to {folder}")
    return 0


def _position(text: str) -> int:
    from mechinterp.errors import MechinterpError

    try:
        return int(text)
    except ValueError:
        raise MechinterpError(f"--sink takes 'none', 'first' or a token position (an integer); got {text!r}.") from None
