"""``mechinterp attribute``: attribute a target to the prompt's tokens; writes JSON and HTML."""

from __future__ import annotations

import argparse
import json

from mechinterp.cli.common import add_model_args, load_model, out_dir, write_json
from mechinterp.core.atomic import write_text


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("attribute", help="input attribution (IG, LRP, SHAP, LIME, occlusion, gradients)")
    add_model_args(parser)
    parser.add_argument("--prompt", required=True, help="the prompt text")
    parser.add_argument("--target", required=True,
                        help="answer token (' Paris'); 'A|B' for the logit difference A - B; "
                             "'generate:N' for N greedy tokens; 'continuation:TEXT' for a forced continuation")
    parser.add_argument("--kind", default="logit", choices=["logit", "logprob", "prob"], help="what to read for an answer token")
    parser.add_argument("--method", action="append", default=None,
                        help="method name (repeat for several; default integrated_gradients)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="method option, e.g. n_steps=32 (JSON values; repeatable)")
    parser.add_argument("--faithfulness", action="store_true", help="also compute deletion/insertion curves")
    parser.add_argument("--out", default="out/attribute", help="output folder")
    parser.set_defaults(handler=run)


def parse_target(text: str, kind: str = "logit"):
    """Target from the command-line syntax (see ``--target``)."""
    from mechinterp.attribution import Continuation, Contrast, Generate, NextToken

    if text.startswith("generate:"):
        return Generate(int(text.split(":", 1)[1]))
    if text.startswith("continuation:"):
        return Continuation(text.split(":", 1)[1])
    if "|" in text:
        good, bad = text.split("|", 1)
        return Contrast(good, bad, kind=kind)
    return NextToken(text, kind=kind)


def _options(pairs: list[str]) -> dict:
    from mechinterp.errors import MechinterpError

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise MechinterpError(f"--option needs KEY=VALUE, got {pair!r}.")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from mechinterp.attribution import attribute, comparison_html, faithfulness
    from mechinterp.viz import html_page

    model = load_model(args)
    target = parse_target(args.target, args.kind)
    options = _options(args.option)
    methods = args.method or ["integrated_gradients"]
    folder = out_dir(args.out)
    results, summary = [], []
    body = f"<h1>attribution</h1><p class='muted'>model {args.model} · prompt {args.prompt!r}</p>"
    for method in methods:
        res = attribute(model, args.prompt, target, method=method, **options)
        results.append(res)
        res.save(folder / f"{res.method}.json")
        entry = {"method": res.method, "targets": res.targets, "top": res.top_k(3), "metadata_keys": sorted(res.metadata)}
        if "relative_delta" in res.metadata:
            entry["relative_delta"] = res.metadata["relative_delta"]
        body += res.to_html()
        if args.faithfulness and res.n_targets == 1:
            faith = faithfulness(model, args.prompt, target, res)
            entry["faithfulness"] = faith.summary()
            body += faith.to_html()
        summary.append(entry)
    if len(results) > 1 and all(r.tokens == results[0].tokens for r in results):
        body += "<h2>side by side</h2>" + comparison_html(results)
    write_json(folder / "summary.json", {"model": args.model, "prompt": args.prompt, "target": args.target, "results": summary})
    write_text(folder / "attribution.html", html_page("attribution", body))
    for entry in summary:
        tops = ", ".join(f"{tok!r} {score:+.3f}" for _, tok, score in entry["top"])
        print(f"{entry['method']:<22} top: {tops}")
    print(f"wrote {folder / 'summary.json'} and {folder / 'attribution.html'}")
    return 0
