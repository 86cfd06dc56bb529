"""Ground truth for the explain family on zoo:toy-lm: Grad-CAM beside IG, counterfactual and surrogate bars.

* **Grad-CAM hit rate** (issue 20): on facts, sentiment and greater-than (ground-truth
  positions known by construction), how often the top non-BOS position of Grad-CAM
  (``resid_post`` of each layer, and the layer-combined map) is a ground-truth position;
  beside integrated gradients (pad baseline, 32 steps, as ``attribution_ground_truth.py``)
  and gradient × input on the same prompts and the same contrast target.
* **Counterfactuals**: per task, the share of prompts whose flip edits a ground-truth
  position (country / name / sentiment word), the share flipped with one edit, and the
  forward passes per prompt: default options (the plausibility filter ``max_token_drop=3``)
  against plain HotFlip (``max_token_drop=None``) and the fixed-pool recipe; sentiment reads
  its label set. ``--smollm2``: the same on SmolLM2-135M-Instruct's fact prompts (the
  country as ground truth).
* **Counterfactual edit kinds** (``--edits``): the default search (substitutions) against
  ``edits=`` with deletions and/or insertions, away from the prediction and (``--targeted``)
  to each prompt's wrong answer: flips, ground-truth tokens substituted or deleted, mean
  edits, the share of flips using a deletion / an insertion, forward and backward passes.
* **Surrogates**: held-out fidelity of a decision tree on token presence at several depths
  and of the sparse linear surrogate on sentiment (300 training-split prompts).

Usage:
    python benchmarks/explain_ground_truth.py [--n 50] [--out benchmarks/results/explain.md]
    python benchmarks/explain_ground_truth.py --smollm2 [--n 12] [--edits]
    python benchmarks/explain_ground_truth.py --edits [--targeted] [--n 100] [--tasks facts,ioi,sentiment]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch


def grad_cam_table(model, tasks: list[str], n: int) -> list[str]:
    import mechinterp
    from mechinterp.attribution import Contrast, attribute
    from mechinterp.explain import grad_cam

    rows = {}
    for name in tasks:
        task = mechinterp.tasks.load(name, model, n=n)
        hits: dict[str, int] = {}
        for i in range(len(task)):
            tokens = task.clean_tokens[i, : int(task.lengths[i])]
            target = Contrast(int(task.correct_tokens[i]), int(task.wrong_tokens[i]))
            truth = task.ground_truth.positions[i]
            cam = grad_cam(model, tokens, target)
            maps = {f"grad-cam L{layer} (resid_post)": cam.maps[j] for j, layer in enumerate(cam.layers)}
            maps["grad-cam combined"] = cam.combined
            hires = grad_cam(model, tokens, target, variant="hirescam")
            maps.update({f"hirescam = ReLU(grad x act) L{layer} (resid_post)": hires.maps[j] for j, layer in enumerate(hires.layers)})
            maps["hirescam combined"] = hires.combined
            emb = grad_cam(model, tokens, target, layers=[0], site="resid_pre")
            maps["grad-cam L0 resid_pre (token + position embedding)"] = emb.maps[0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                maps["integrated gradients (pad, 32 steps)"] = attribute(model, tokens, target, method="ig", baseline="pad",
                                                                        n_steps=32, warn=False).scores[0]
                maps["gradient x input"] = attribute(model, tokens, target, method="gradient_x_input", warn=False).scores[0]
            for key, row in maps.items():
                row = row.clone().float()
                row[0] = -float("inf")
                hits[key] = hits.get(key, 0) + int(int(row.argmax()) in truth)
        rows[name] = {k: v / len(task) for k, v in hits.items()}
    keys = list(next(iter(rows.values())))
    out = ["| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for key in keys:
        out.append(f"| {key} | " + " | ".join(f"{rows[t][key]:.2f}" for t in tasks) + " |")
    return out


def counterfactual_table(model, n: int) -> list[str]:
    import mechinterp
    from mechinterp.explain import counterfactual

    labels = {"among": ["positive", "negative"]}
    plain = {"max_token_drop": None}  # plain HotFlip: no plausibility filter
    settings = [("facts", {}), ("ioi", {}), ("sentiment", labels),
                ("facts", plain), ("ioi", plain), ("sentiment", {**labels, **plain}),
                ("sentiment", {**labels, "max_token_drop": None, "max_fluency_drop": 0.5, "fluent_pool": 50})]
    out = ["| task | options | flipped | edits a ground-truth token | one edit | forward passes / prompt | s / prompt |",
           "|---|---|---|---|---|---|---|"]
    for name, options in settings:
        task = mechinterp.tasks.load(name, model, n=n)
        flipped = hit = one = forward = 0
        start = time.perf_counter()
        for i in range(len(task)):
            cf = counterfactual(model, task.clean_tokens[i, : int(task.lengths[i])], **options)
            flipped += cf.success
            hit += cf.success and bool(set(cf.positions) & set(task.ground_truth.positions[i]))
            one += cf.success and cf.n_edits == 1
            forward += cf.n_forward
        k = len(task)
        shown = ", ".join(f"{a}={b}" for a, b in options.items() if a != "among") or "defaults"
        if "among" in options:
            shown = "among labels, " + shown
        out.append(f"| {name} | {shown} | {flipped / k:.2f} | {hit / k:.2f} | {one / k:.2f} | {forward / k:.1f} | "
                   f"{(time.perf_counter() - start) / k:.2f} |")
    return out


ALL_EDITS = ("substitute", "delete", "insert")
EDIT_SETTINGS = [(("substitute",), {}), (("substitute", "delete"), {}), (("substitute", "insert"), {}), (ALL_EDITS, {}),
                 (("substitute",), {"max_token_drop": None}), (ALL_EDITS, {"max_token_drop": None})]
TARGET_SETTINGS = [(("substitute",), {"target": "wrong"}), (ALL_EDITS, {"target": "wrong"})]  # to the task's wrong answer


def counterfactual_edits_table(model, n: int, tasks=("facts", "ioi", "sentiment"), settings=EDIT_SETTINGS) -> list[str]:
    """Default options, with and without deletions and insertions (``edits=``): per task, the
    share flipped, the share whose flip substitutes or deletes a ground-truth token (an
    insertion edits no original token), the mean number of edits of a flip, the share of flips
    that use a deletion / an insertion, and the cost. ``{"target": "wrong"}`` in a setting flips
    each prompt to its task's wrong answer (the corrupted prompt's) instead of away from the
    prediction."""
    import mechinterp
    from mechinterp.errors import MechinterpError
    from mechinterp.explain import counterfactual

    out = ["| task | edits | flipped | edits a ground-truth token | mean edits (flips) | one edit | flips with a deletion "
           "| flips with an insertion | forward / prompt | backward / prompt | s / prompt |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    examples = []
    for name in tasks:
        task = mechinterp.tasks.load(name, model, n=n)
        options = {"among": ["positive", "negative"]} if name == "sentiment" else {}
        for kinds, extra in settings:
            flipped = hit = one = n_edits = dele = ins = fwd = bwd = 0
            start = time.perf_counter()
            for i in range(len(task)):
                opts = {**options, **extra}
                if opts.get("target") == "wrong":
                    opts["target"] = int(task.wrong_tokens[i])
                try:
                    cf = counterfactual(model, task.clean_tokens[i, : int(task.lengths[i])], edits=kinds, **opts)
                except MechinterpError as err:  # the model already predicts the wrong answer: counted as not flipped
                    print(f"  {name} prompt {i}: {err}")
                    continue
                fwd, bwd = fwd + cf.n_forward, bwd + cf.n_backward
                if not cf.success:
                    continue
                flipped += 1
                hit += bool(set(cf.positions) & set(task.ground_truth.positions[i]))
                one += cf.n_edits == 1
                n_edits += cf.n_edits
                dele += "delete" in cf.kinds
                ins += "insert" in cf.kinds
                if not extra and ("delete" in cf.kinds or "insert" in cf.kinds) and sum(e[0] == name for e in examples) < 3:
                    examples.append((name, cf.summary()))
            k = len(task)
            shown = ", ".join(kinds) + "".join(f"; {a}={b}" for a, b in extra.items())
            out.append(f"| {name} | {shown} | {flipped / k:.2f} | {hit / k:.2f} | {n_edits / max(flipped, 1):.2f} | "
                       f"{one / k:.2f} | {dele / max(flipped, 1):.2f} | {ins / max(flipped, 1):.2f} | {fwd / k:.1f} | "
                       f"{bwd / k:.1f} | {(time.perf_counter() - start) / k:.2f} |")
            print(out[-1], flush=True)
    out += ["", "Flips that use a deletion or an insertion (first three per task):", ""]
    out += [f"* {name}: {text}" for name, text in examples]
    return out


def smollm2_counterfactual_table(n: int, edits: bool = False) -> list[str]:
    """Counterfactuals away from the prediction on SmolLM2's fact prompts: does the edit hit the country?"""
    import sys
    from pathlib import Path

    import mechinterp
    from mechinterp.explain import counterfactual

    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root / "tests"), str(root / "benchmarks")]
    from attribution_real import fact_prompts
    from conftest import smollm2_gguf_path

    model = mechinterp.load(str(smollm2_gguf_path()))
    facts = fact_prompts(model, n=n)
    out = ["| options | edits the country | one edit | forward passes / prompt | flips with a deletion / insertion |",
           "|---|---|---|---|---|"]
    settings = [("defaults (`max_token_drop=3`)", {}), ("plain HotFlip (`max_token_drop=None`)", {"max_token_drop": None})]
    if edits:
        settings = [settings[0], ("defaults + `edits=(\"substitute\", \"delete\", \"insert\")`", {"edits": ALL_EDITS})]
    for label, options in settings:
        hit = one = forward = dele = ins = 0
        for fact in facts:
            cf = counterfactual(model, fact["prompt"], **options)
            print(f"  {label}: {cf.summary()}")
            hit += cf.success and fact["subject"] in cf.positions
            one += cf.success and cf.n_edits == 1
            forward += cf.n_forward
            dele += cf.success and "delete" in cf.kinds
            ins += cf.success and "insert" in cf.kinds
        out.append(f"| {label} | {hit}/{len(facts)} | {one}/{len(facts)} | {forward / len(facts):.1f} | {dele} / {ins} |")
    return out


def surrogate_table(model) -> list[str]:
    import mechinterp
    from mechinterp.explain import fit_surrogate

    task = mechinterp.tasks.load("sentiment", model, n=300, split="train")
    out = ["| surrogate | fidelity train | fidelity held out | majority class | first splits / largest weights |", "|---|---|---|---|---|"]
    for label, options in [("tree, depth 4", {"max_depth": 4}), ("tree, depth 8", {"max_depth": 8}),
                           ("tree, depth 16 (default)", {}), ("sparse linear (L1 logistic, C=1)", {"kind": "linear"})]:
        sur = fit_surrogate(model, task, among=["positive", "negative"], **options)
        first = sur.split_features[:4] if sur.kind == "tree" else list(next(iter(sur.coefficients.values())))[:4]
        out.append(f"| {label} | {sur.fidelity_train:.3f} | {sur.fidelity_test:.3f} | {sur.majority_test:.3f} | {', '.join(first)} |")
    return out


def main() -> None:
    import mechinterp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--out", default=None)
    parser.add_argument("--smollm2", action="store_true", help="only the SmolLM2 counterfactual table")
    parser.add_argument("--edits", action="store_true",
                        help="only the counterfactual edit-kinds table (zoo:toy-lm); with --smollm2: defaults against all edit kinds")
    parser.add_argument("--tasks", default="facts,ioi,sentiment", help="--edits: tasks, comma-separated")
    parser.add_argument("--targeted", action="store_true", help="--edits: flip to each prompt's wrong answer")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.smollm2:
        print("\n".join(smollm2_counterfactual_table(args.n, edits=args.edits)))
        return
    model = mechinterp.load("zoo:toy-lm")
    if args.edits:
        settings = TARGET_SETTINGS if args.targeted else EDIT_SETTINGS
        text = "\n".join(counterfactual_edits_table(model, args.n, tuple(args.tasks.split(",")), settings)) + "\n"
        print(text)
        if args.out:
            from pathlib import Path

            Path(args.out).write_text(text)
        return
    lines = [f"## Grad-CAM beside IG: top-1 hit rate on ground-truth positions (zoo:toy-lm, {args.n} test prompts per task)", ""]
    lines += grad_cam_table(model, ["facts", "sentiment", "greater-than"], args.n)
    lines += ["", f"## Counterfactuals (zoo:toy-lm, {args.n} test prompts per task)", ""]
    lines += counterfactual_table(model, args.n)
    lines += ["", f"## Counterfactuals with deletions and insertions (zoo:toy-lm, {args.n} test prompts per task)", ""]
    lines += counterfactual_edits_table(model, args.n)
    lines += ["", "To the task's wrong answer (`target=`):", ""]
    lines += counterfactual_edits_table(model, args.n, ("facts", "ioi"), TARGET_SETTINGS)
    lines += ["", "## Surrogates on sentiment (zoo:toy-lm, 300 training-split prompts, 30% held out)", ""]
    lines += surrogate_table(model)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
