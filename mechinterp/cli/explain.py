"""``mechinterp explain``: explanations beyond attribution (:mod:`mechinterp.explain`); writes JSON and HTML.

``mechinterp explain WHAT`` with WHAT one of

* ``counterfactual`` (default): the smallest plausible edit that flips each of ``--n`` task
  prompts (or ``--prompt``); with a task, the share of flips that edit a ground-truth token;
  ``--edits substitute,delete,insert`` also searches deletions and insertions;
* ``surrogate``: a decision tree (``--kind linear``: sparse logistic) imitating the model on
  ``--n`` training prompts of ``--task``, with held-out fidelity and its rules;
* ``gradcam``: Grad-CAM per layer and combined for ``--prompt`` and ``--target``;
* ``words``: a plain-language explanation of one prediction, every number cited;
* ``cot``: chain-of-thought faithfulness on ``--examples`` (a JSON list of ``[question,
  scratchpad, suffix]``); with none, on the zoo's scratchpad twins (``zoo:cot-reader``,
  ``zoo:cot-direct``) and their cipher-sum examples (the default model writes no scratchpad).

Without ``--prompt``/``--target``, the first prompt of ``--task`` and its correct-versus-wrong
answers are used. When the task's answers are a label set (at most two values, as sentiment's),
the counterfactual and the surrogate read the prediction over that set.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mechinterp.core.atomic import write_text
from mechinterp.cli.common import DEFAULT_MODEL, add_model_args, add_task_arg, check_out, load_model, load_task, steps, write_json

WHATS = ["counterfactual", "surrogate", "gradcam", "words", "cot"]
COT_PAIR = ["zoo:cot-reader", "zoo:cot-direct"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("explain", help="counterfactuals, surrogate models, Grad-CAM, explanations in words, CoT faithfulness")
    parser.add_argument("what", nargs="?", default="counterfactual", choices=WHATS,
                        help="which explanation (default: counterfactual)")
    add_model_args(parser, seed_help="seed of the task's prompt draw (and of the surrogate's split, the CoT corruption)")
    add_task_arg(parser, " whose prompts, answers and ground truth are used")
    parser.add_argument("--prompt", default=None, help="one prompt (default: the task's prompts)")
    parser.add_argument("--target", default=None,
                        help="counterfactual: the answer to flip to (default: away from the prediction); gradcam/words: "
                             "'A|B' for the logit difference, or one answer (default: the task's 'correct|wrong')")
    parser.add_argument("--n", type=int, default=None,
                        help="prompts: counterfactual 8, surrogate 200 (training split); cot examples 64")
    parser.add_argument("--max-edits", type=int, default=3, help="counterfactual: most edits tried")
    parser.add_argument("--max-token-drop", type=float, default=3.0,
                        help="counterfactual: plausibility of an edit in nats (negative: off, plain HotFlip)")
    parser.add_argument("--edits", default="substitute",
                        help="counterfactual: edit kinds searched, comma-separated from substitute,delete,insert "
                             "(default: substitute, the recommended search; see docs/howto/explain.md)")
    parser.add_argument("--kind", default="tree", choices=["tree", "linear"], help="surrogate model")
    parser.add_argument("--max-depth", type=int, default=16, help="surrogate tree depth")
    parser.add_argument("--method", default="integrated_gradients", help="words: the attribution method")
    parser.add_argument("--examples", default=None, help="cot: JSON file, a list of [question, scratchpad, suffix]")
    parser.add_argument("--out", default="out/explain", help="output folder")
    parser.set_defaults(handler=run)


def _labels(args: argparse.Namespace, model: Any) -> list[str] | None:
    """The task's label set when its answers take at most 2 values over 32 prompts (sentiment), else None."""
    probe = load_task(args.task, model, n=32, seed=args.seed)
    answers = sorted(set(probe.correct_answers) | set(probe.wrong_answers))
    return answers if len(answers) <= 2 else None


def _edit_kinds(args: argparse.Namespace) -> tuple[str, ...]:
    from mechinterp.explain.edits import check_edit_kinds

    return check_edit_kinds([k.strip() for k in args.edits.split(",") if k.strip()])


def _target(text: str) -> Any:
    from mechinterp.attribution import Contrast, NextToken

    if "|" in text:
        good, bad = text.split("|", 1)
        return Contrast(good, bad)
    return NextToken(text)


def run(args: argparse.Namespace) -> int:
    from mechinterp.errors import MechinterpError

    for name in ("n", "max_edits", "max_depth"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise MechinterpError(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
    if args.what == "counterfactual":
        _edit_kinds(args)  # bad kinds fail before the model loads
    folder = check_out(args.out)
    if args.what == "cot":
        return _cot(args, folder)
    progress = steps(f"explain {args.what}", 2)
    with progress.step("loading", args.model):
        model = load_model(args)
        n = args.n or {"counterfactual": 8, "surrogate": 200}.get(args.what, 1)
        split = "train" if args.what == "surrogate" else "test"
        task = load_task(args.task, model, n=n, seed=args.seed, split=split)
    return {"counterfactual": _counterfactual, "surrogate": _surrogate, "gradcam": _gradcam,
            "words": _words}[args.what](args, model, task, folder, progress)


def _page(folder: Path, name: str, title: str, body: str) -> None:
    from mechinterp.viz import html_page

    write_text(folder / name, html_page(title, body))


def _counterfactual(args: argparse.Namespace, model: Any, task: Any, folder: Path, progress: Any) -> int:
    from mechinterp.explain import counterfactual

    among = _labels(args, model)
    kinds = _edit_kinds(args)
    options = {"among": among, "edits": list(kinds), "max_edits": args.max_edits,
               "max_token_drop": None if args.max_token_drop < 0 else args.max_token_drop}
    if args.prompt is not None:
        prompts, truth = [args.prompt], [None]
    else:
        prompts = [task.clean_tokens[i, : int(task.lengths[i])] for i in range(len(task))]
        truth = [set(task.ground_truth.positions[i]) for i in range(len(task))]
    rows, body, hits = [], "", []
    with progress.step("counterfactuals", f"{len(prompts)} prompt(s)"):
        for prompt, gt in zip(prompts, truth):
            cf = counterfactual(model, prompt, args.target, **options)
            row = {"summary": cf.summary(), "success": cf.success, "n_edits": cf.n_edits, "edits": cf.edits,
                   "new_prediction": cf.new_prediction, "n_forward": cf.n_forward}
            if gt is not None:
                row["edits_ground_truth"] = bool(cf.success and set(cf.positions) & gt)
                hits.append(row["edits_ground_truth"])
            rows.append(row)
            body += cf.to_html()
            print(f"  {cf.summary()}")
    summary = {"model": args.model, "task": args.task if args.prompt is None else None, "options": options,
               "n": len(rows), "flipped": sum(r["success"] for r in rows) / len(rows),
               "one_edit": sum(r["success"] and r["n_edits"] == 1 for r in rows) / len(rows),
               "edits_ground_truth": sum(hits) / len(hits) if hits else None, "counterfactuals": rows}
    write_json(folder / "counterfactuals.json", summary)
    _page(folder, "counterfactuals.html", f"counterfactuals: {args.model}", body)
    if hits:
        print(f"{args.task}: {summary['flipped']:.0%} flipped, {summary['edits_ground_truth']:.0%} by editing a "
              f"ground-truth token, {summary['one_edit']:.0%} with one edit")
    print(f"wrote {folder / 'counterfactuals.json'} and counterfactuals.html")
    return 0


def _surrogate(args: argparse.Namespace, model: Any, task: Any, folder: Path, progress: Any) -> int:
    from mechinterp.explain import fit_surrogate

    with progress.step("surrogate", f"{args.kind}, {len(task)} prompts"):
        sur = fit_surrogate(model, task, among=_labels(args, model), kind=args.kind, max_depth=args.max_depth, seed=args.seed)
    sur.save(folder / "surrogate.json")
    _page(folder, "surrogate.html", f"surrogate: {args.model} on {args.task}", sur.to_html())
    print(f"{args.task}: {args.kind} surrogate, fidelity {sur.fidelity_test:.3f} on held-out prompts "
          f"({sur.fidelity_train:.3f} train, majority class {sur.majority_test:.3f})")
    for rule in sur.rules[:8]:
        print(f"  {rule}")
    print(f"wrote {folder / 'surrogate.json'} and surrogate.html")
    return 0


def _one(args: argparse.Namespace, task: Any) -> tuple[Any, str]:
    from mechinterp.errors import MechinterpError

    if args.prompt is not None and args.target is None:
        raise MechinterpError("--prompt without --target: pass the answer to explain, e.g. --target 'Paris' or 'Paris|Rome'.")
    prompt = args.prompt if args.prompt is not None else task.clean_tokens[0, : int(task.lengths[0])]
    target = args.target or f"{task.correct_answers[0]}|{task.wrong_answers[0]}"
    return prompt, target


def _gradcam(args: argparse.Namespace, model: Any, task: Any, folder: Path, progress: Any) -> int:
    from mechinterp.explain import grad_cam

    prompt, target = _one(args, task)
    with progress.step("grad-cam", target):
        cam = grad_cam(model, prompt, _target(target))
    cam.save(folder / "gradcam.json")
    _page(folder, "gradcam.html", f"grad-cam: {args.model}", cam.to_html())
    top = sorted(range(len(cam.tokens)), key=lambda i: -float(cam.combined[i]))[:3]
    print(f"grad-cam for {target!r}: top tokens " + ", ".join(f"{cam.tokens[i]!r}@{i} {float(cam.combined[i]):.2f}" for i in top))
    print(f"wrote {folder / 'gradcam.json'} and gradcam.html")
    return 0


def _words(args: argparse.Namespace, model: Any, task: Any, folder: Path, progress: Any) -> int:
    from mechinterp.explain import explain_in_words

    prompt, target = _one(args, task)
    with progress.step("explanation in words", args.method):
        res = explain_in_words(model, prompt, _target(target), method=args.method)
    res.save(folder / "words.json")
    write_text(folder / "words.txt", res.text + "\n")
    _page(folder, "words.html", f"explanation: {args.model}", res.to_html())
    print(res.text)
    print(f"wrote {folder / 'words.json'}, words.txt and words.html")
    return 0


def _cot(args: argparse.Namespace, folder: Path) -> int:
    from mechinterp.errors import MechinterpError
    from mechinterp.explain import cot_faithfulness

    n = args.n or 64
    if args.examples is not None:
        try:
            examples = [tuple(e) for e in json.loads(Path(args.examples).read_text())]
        except (json.JSONDecodeError, TypeError) as err:
            raise MechinterpError(f"--examples {args.examples}: not a JSON list of [question, scratchpad, suffix] ({err}).") from None
        models, options = [args.model], {}
    else:
        from mechinterp.zoo.train.cot_pair import N_SPECIAL, examples as pair_examples

        if args.model not in (DEFAULT_MODEL, *COT_PAIR):
            raise MechinterpError(f"explain cot on {args.model}: pass --examples FILE with [question, scratchpad, suffix] "
                                  "triples (the built-in examples are the cipher sums of zoo:cot-reader / zoo:cot-direct).")
        models = COT_PAIR if args.model == DEFAULT_MODEL else [args.model]
        examples = pair_examples(n, seed=args.seed + 1)
        options = {"filler": None, "corrupt_vocab": list(range(N_SPECIAL, N_SPECIAL + 10))}
        if args.model == DEFAULT_MODEL:
            print(f"{DEFAULT_MODEL} writes no scratchpad: measuring the zoo's scratchpad twins {', '.join(COT_PAIR)}")
    progress = steps("explain cot", len(models))
    summary, body = {}, ""
    for name in models:
        with progress.step(name, f"{len(examples)} examples"):
            args.model = name
            model = load_model(args)
            res = cot_faithfulness(model, examples, seed=args.seed, **options)
        stem = name.replace("zoo:", "").replace("/", "_")
        res.save(folder / f"cot-{stem}.json")
        body += f"<h2>{name}</h2>" + res.to_html()
        summary[name] = res.dependence
        print(f"  {name}: answer changed " + ", ".join(f"{k} {v:.0%}" for k, v in res.dependence.items()))
    write_json(folder / "cot.json", summary)
    _page(folder, "cot.html", "chain-of-thought faithfulness", body)
    print(f"wrote {folder / 'cot.json'} and cot.html")
    return 0
