"""Ground truth: how often each method's top-ranked input token is a ground-truth position.

On ``zoo:toy-lm`` and the tasks facts, sentiment and greater-than (positions known by
construction: ``task.ground_truth.positions``), every registered method explains the
task's contrast (logit of the correct answer minus the wrong one) on each prompt; the
top-ranked token is the highest signed score among non-BOS positions (BOS is not a
candidate: it never carries the answer). Prints a markdown table of hit rates.

With ``--ig-baselines`` it adds one row per IG baseline (zero, pad, unk, the mean token
embedding, expected gradients over random-token baselines, and the task's counterfactual
prompt, which uses task knowledge the others do not).

Usage:
    python benchmarks/attribution_ground_truth.py [--model zoo:toy-lm] [--n 50] [--json out.json]
        [--methods ig,attn_lrp] [--ig-baselines]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import torch

IG_STEPS = 32
METHOD_OPTIONS = {
    "integrated_gradients": {"n_steps": IG_STEPS},
    "kernel_shap": {"n_samples": 256},
    "lime": {"n_samples": 256},
    "shapley": {"max_features": 12},
}


def _ig(model, tokens, target, baseline):
    from mechinterp.attribution import attribute

    return attribute(model, tokens, target, method="ig", n_steps=IG_STEPS, baseline=baseline, warn=False).scores


def _expected_gradients(model, tokens, target, k: int = 8, seed: int = 0):
    """Average IG over ``k`` baselines of uniformly random tokens (BOS kept), ``IG_STEPS // 2`` steps each."""
    from mechinterp.attribution import attribute

    gen = torch.Generator().manual_seed(seed)
    total = 0
    for _ in range(k):
        ids = torch.randint(0, model.cfg.d_vocab, (len(tokens),), generator=gen)
        total = total + attribute(model, tokens, target, method="ig", n_steps=IG_STEPS // 2, baseline=ids, warn=False).scores
    return total / k


#: row name -> scores(model, task, i, tokens, target); IG baselines compared on the same prompts
IG_BASELINES = {
    "ig, zero baseline (default)": lambda m, task, i, tok, tgt: _ig(m, tok, tgt, "zero"),
    "ig, pad baseline (BOS kept)": lambda m, task, i, tok, tgt: _ig(m, tok, tgt, "pad"),
    "ig, unk baseline": lambda m, task, i, tok, tgt: _ig(m, tok, tgt, "unk"),
    "ig, mean token embedding": lambda m, task, i, tok, tgt: _ig(m, tok, tgt, m.W_E.detach().mean(0)),
    "ig, expected gradients (8 random-token baselines)": lambda m, task, i, tok, tgt: _expected_gradients(m, tok, tgt),
    "ig, counterfactual prompt (task's corrupted prompt)": lambda m, task, i, tok, tgt: _ig(
        m, tok, tgt, task.corrupted_tokens[i, : len(tok)]),
}


def hit_rates(model, task_name: str, n: int, methods: list[str], seed: int = 0) -> dict[str, dict[str, float]]:
    """Hit rate per method name (a registered method, or a row name of :data:`IG_BASELINES`)."""
    import mechinterp
    from mechinterp.attribution import Contrast, attribute

    task = mechinterp.tasks.load(task_name, model, n=n, seed=seed)
    out = {}
    for method in methods:
        hits, used, start = 0, 0, time.perf_counter()
        for i in range(len(task)):
            tokens = task.clean_tokens[i, : int(task.lengths[i])]
            target = Contrast(int(task.correct_tokens[i]), int(task.wrong_tokens[i]))
            try:
                if method in IG_BASELINES:
                    scores = IG_BASELINES[method](model, task, i, tokens, target)
                else:
                    scores = attribute(model, tokens, target, method=method, warn=False, **METHOD_OPTIONS.get(method, {})).scores
            except mechinterp.MechinterpError:
                continue  # e.g. more features than the exact Shapley limit
            row = scores[0].clone()
            row[0] = -float("inf")
            hits += int(int(row.argmax()) in task.ground_truth.positions[i])
            used += 1
        out[method] = {"hit_rate": hits / used if used else float("nan"), "prompts": used,
                       "seconds": time.perf_counter() - start}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="zoo:toy-lm")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--tasks", default="facts,sentiment,greater-than")
    parser.add_argument("--json", default=None)
    parser.add_argument("--methods", default=None, help="comma-separated method names (default: all registered)")
    parser.add_argument("--ig-baselines", action="store_true", help="add one IG row per baseline")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    import mechinterp
    from mechinterp.attribution import method_names

    model = mechinterp.load(args.model)
    methods = args.methods.split(",") if args.methods else method_names()
    if args.ig_baselines:
        methods += list(IG_BASELINES)
    table = {t: hit_rates(model, t, args.n, methods) for t in args.tasks.split(",")}
    tasks = list(table)
    print(f"\n{args.model}, {args.n} prompts per task: rate at which the top-ranked token is a ground-truth position\n")
    print("| method | " + " | ".join(tasks) + " |")
    print("|---|" + "---|" * len(tasks))
    for m in methods:
        print(f"| {m} | " + " | ".join(f"{table[t][m]['hit_rate']:.0%} ({table[t][m]['prompts']})" for t in tasks) + " |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": args.model, "n": args.n, "table": table}, fh, indent=2)


if __name__ == "__main__":
    main()
