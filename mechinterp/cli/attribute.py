"""``mechinterp attribute``: attribute a target to the prompt's tokens; writes JSON and HTML.

``--option KEY=VALUE`` goes to every chosen method that takes ``KEY`` (``n_steps`` reaches IG
and not LRP), ``--option METHOD.KEY=VALUE`` to that method only; an option no chosen method
takes is an error. With no ``--prompt``/``--target``, the first prompt of ``--task`` and its
correct-versus-wrong answer contrast are used.
"""

from __future__ import annotations

import argparse
import json

from mechinterp.core.atomic import write_text
from mechinterp.cli.common import add_model_args, add_task_arg, check_out, did_you_mean, load_model, load_task, steps, write_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("attribute", help="input attribution (IG, LRP, SHAP, LIME, occlusion, gradients)")
    add_model_args(parser, seed_help="seed of the task's prompt draw when --prompt is not given, and of sampling "
                                     "methods (SHAP, LIME)")
    parser.add_argument("--prompt", default=None, help="the prompt text (default: the first prompt of --task)")
    parser.add_argument("--target", default=None,
                        help="answer token (' Paris'); 'A|B' for the logit difference A - B; "
                             "'generate:N' for N greedy tokens; 'continuation:TEXT' for a forced continuation "
                             "(default: the task's 'correct|wrong' answers for its first prompt)")
    add_task_arg(parser, " whose first prompt and answers are used when --prompt/--target are not given")
    parser.add_argument("--kind", default="logit", choices=["logit", "logprob", "prob"], help="what to read for an answer token")
    parser.add_argument("--method", action="append", default=None,
                        help="method name (repeat for several; default integrated_gradients)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="method option, e.g. n_steps=32 or ig.n_steps=32 (JSON values; repeatable; goes to every "
                             "chosen method that takes it)")
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


def route_options(methods: list[str], pairs: list[str]) -> dict[str, dict]:
    """Each method's options: ``KEY=VALUE`` to every method whose constructor takes ``KEY``, ``METHOD.KEY=VALUE`` to one.

    Raises:
        MechinterpError: an unknown method, or an option that no chosen method takes.
    """
    import inspect

    from mechinterp.attribution import get_method, method_names
    from mechinterp.errors import MechinterpError

    classes = {}
    for m in methods:
        try:
            classes[m] = get_method(m)
        except MechinterpError as err:
            raise MechinterpError(f"{err}{did_you_mean(m, method_names())}") from None
    accepts = {m: {p for p in inspect.signature(c.__init__).parameters if p != "self"} for m, c in classes.items()}
    routed: dict[str, dict] = {m: {} for m in methods}
    for key, value in _options(pairs).items():
        prefix, dot, name = key.rpartition(".")
        if dot:
            try:
                canonical = get_method(prefix).name
            except MechinterpError:
                canonical = prefix
            chosen = [m for m in methods if classes[m].name == canonical]
            if not chosen:
                raise MechinterpError(f"--option {key}: {prefix!r} is not one of the chosen methods {methods}.")
        else:
            chosen, name = [m for m in methods if key in accepts[m]], key
        takers = [m for m in chosen if name in accepts[m]]
        if not takers:
            valid = {m: sorted(accepts[m]) for m in (chosen or methods)}
            raise MechinterpError(f"--option {key}: no chosen method takes {name!r}. Options by method: {valid}.")
        for m in takers:
            routed[m][name] = value
    return routed


def run(args: argparse.Namespace) -> int:
    from mechinterp.attribution import attribute, comparison_html, faithfulness
    from mechinterp.viz import html_page

    methods = args.method or ["integrated_gradients"]
    routed = route_options(methods, args.option)
    folder = check_out(args.out)
    progress = steps("attribute", 1 + len(methods))
    with progress.step("loading", args.model):
        model = load_model(args)
        if args.prompt is None or args.target is None:
            task = load_task(args.task, model, n=1, seed=args.seed)
            if args.prompt is None:
                args.prompt = task.clean_prompts[0]
                if args.target is None:
                    args.target = f"{task.correct_answers[0]}|{task.wrong_answers[0]}"
            elif args.target is None:
                from mechinterp.errors import MechinterpError

                raise MechinterpError("--prompt without --target: pass the answer to explain, e.g. --target ' Paris'.")
            progress.note(f"using the first {args.task} prompt {args.prompt!r}, target {args.target!r}")
    target = parse_target(args.target, args.kind)
    results, summary = [], []
    body = f"<h1>attribution</h1><p class='muted'>model {args.model} · prompt {args.prompt!r}</p>"
    for method in methods:
        with progress.step(method, ", ".join(f"{k}={v}" for k, v in routed[method].items())):
            res = attribute(model, args.prompt, target, method=method, **routed[method])
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
