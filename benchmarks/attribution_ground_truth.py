"""Ground truth: how often each method's top-ranked input token is a ground-truth position.

On ``zoo:toy-lm`` and the tasks facts, sentiment and greater-than (positions known by
construction: ``task.ground_truth.positions``), every registered method explains the
task's contrast (logit of the correct answer minus the wrong one) on each prompt (IG with the
pad baseline, see :data:`METHOD_OPTIONS`); the
top-ranked token is the highest signed score among non-BOS positions (BOS is not a
candidate: it never carries the answer). Prints a markdown table of hit rates.

With ``--completeness`` it instead prints IG's completeness check on the same tasks (pad
baseline, or ``--baseline zero``; contrast target): per rule and step budget, how many prompts miss
``|sum(attr) - (F(x) - F(x'))| < 1%`` of ``|F(x) - F(x')|``, the largest relative delta, the
mean number of gradient rows, and where on the straight path ``dF/dα`` peaks.

With ``--ig-baselines`` it adds one row per IG baseline (zero, pad, unk, the mean token
embedding, expected gradients over random-token baselines, and the task's counterfactual
prompt, which uses task knowledge the others do not).

Usage:
    python benchmarks/attribution_ground_truth.py [--model zoo:toy-lm] [--n 50] [--json out.json]
        [--methods ig,attn_lrp] [--ig-baselines]
    python benchmarks/attribution_ground_truth.py --completeness --n 24 [--baseline zero]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import torch

IG_STEPS = 32
#: Per-method options. IG uses the pad baseline: zoo:toy-lm was trained with template-word dropout
#: (each template word replaced by ``<pad>`` with probability 0.15), so ``<pad>`` is the model's own
#: "missing word" and an all-pad prompt (BOS kept) is the absence baseline by construction. The
#: library default (the mean token embedding, chosen on SmolLM2) is not what toy-lm reads as missing; the
#: perturbation methods replace by ``<pad>`` here for the same reason. The zero-baseline row is in --ig-baselines.
METHOD_OPTIONS = {
    "integrated_gradients": {"n_steps": IG_STEPS, "baseline": "pad"},
    "kernel_shap": {"n_samples": 256, "replacement": "pad"},
    "lime": {"n_samples": 256, "replacement": "pad"},
    "shapley": {"max_features": 12, "replacement": "pad"},
    "occlusion": {"replacement": "pad"},
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
    "ig, zero baseline (captum's default)": lambda m, task, i, tok, tgt: _ig(m, tok, tgt, "zero"),
    "ig, pad baseline (BOS kept)": lambda m, task, i, tok, tgt: _ig(m, tok, tgt, "pad"),
    "ig, unk baseline": lambda m, task, i, tok, tgt: _ig(m, tok, tgt, "unk"),
    "ig, mean token embedding (the library default)": lambda m, task, i, tok, tgt: _ig(m, tok, tgt, "mean"),
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


#: (rule, n_steps) rows of the completeness table
COMPLETENESS_RULES = [("gausslegendre", 16), ("gausslegendre", 32), ("gausslegendre", 64), ("gausslegendre", 128),
                      ("adaptive", 128), ("adaptive", 256)]


def path_values(model, tokens, target, alphas, baseline: str = "pad"):
    """``F`` on the straight path ``e' + α (e - e')`` of token embeddings (BOS kept), one value per α (``target``: a Contrast)."""

    embed = model.W_E[tokens].detach()
    if baseline == "pad":
        base = model.W_E[model.tokenizer.pad_token_id].detach().expand_as(embed).clone()
    else:
        base = torch.zeros_like(embed)
    base[0] = embed[0]
    path = base[None] + alphas.view(-1, 1, 1) * (embed - base)[None]
    batch = tokens[None].expand(len(alphas), -1)
    with torch.no_grad():
        logits = model.run_with_hooks(batch, fwd_hooks=[("hook_embed", lambda act, hook: path.to(act.dtype))])[:, -1]
    return logits[:, int(target.answer)] - logits[:, int(target.wrong)]


def completeness(model, task_name: str, n: int, seed: int = 0, baseline: str = "pad") -> dict:
    """IG (``baseline`` "pad" or "zero", contrast target) completeness per rule; ``dF/dα`` peak on a 401-point grid."""
    import mechinterp
    from mechinterp.attribution import Contrast, attribute

    task = mechinterp.tasks.load(task_name, model, n=n, seed=seed)
    rows = {f"{r}, {k}": [] for r, k in COMPLETENESS_RULES}
    peaks = []
    alphas = torch.linspace(0, 1, 401)
    for i in range(len(task)):
        tokens = task.clean_tokens[i, : int(task.lengths[i])]
        target = Contrast(int(task.correct_tokens[i]), int(task.wrong_tokens[i]))
        for rule, k in COMPLETENESS_RULES:
            res = attribute(model, tokens, target, method="ig", rule=rule, n_steps=k, baseline=baseline, warn=False)
            md = res.metadata
            gap = md["target_values"][0] - md["baseline_values"][0]
            rows[f"{rule}, {k}"].append({"rel": md["relative_delta"][0], "abs": abs(md["convergence_delta"][0]),
                                         "gap": gap, "rows": md.get("n_gradient_rows", k)})
        f = path_values(model, tokens, target, alphas, baseline)
        df = (f[1:] - f[:-1]) / (alphas[1:] - alphas[:-1])
        j = int(df.abs().argmax())
        peaks.append({"alpha": float(alphas[j] + alphas[j + 1]) / 2, "max_dF": float(df[j]),
                      "median_dF": float(df.abs().median()), "gap": float(f[-1] - f[0])})
    return {"rules": rows, "peaks": peaks}


def main_completeness(args) -> None:
    import mechinterp

    model = mechinterp.load(args.model)
    out = {t: completeness(model, t, args.n, baseline=args.baseline) for t in args.tasks.split(",")}
    tasks = list(out)
    print(f"\n{args.model}, IG {args.baseline} baseline, contrast target, {args.n} prompts per task (seed 0)\n")
    print("| rule, budget | " + " | ".join(f"{t} >1% | max rel. | mean abs. delta" for t in tasks) + " | rows (mean) |")
    print("|---|" + "---|---|---|" * len(tasks) + "---|")
    for name in out[tasks[0]]["rules"]:
        cells, means = [], []
        for t in tasks:
            r = out[t]["rules"][name]
            worst = max(r, key=lambda x: x["rel"])
            cells.append(f"{sum(x['rel'] >= 0.01 for x in r)}/{len(r)} | {worst['rel']:.2g} (gap {worst['gap']:.3g}) | "
                         f"{sum(x['abs'] for x in r) / len(r):.2e}")
            means.append(f"{sum(x['rows'] for x in r) / len(r):.0f}")
        print(f"| {name} | " + " | ".join(cells) + " | " + " / ".join(means) + " |")
    print(f"\ndF/dα on the straight {args.baseline} path (401 points): per task, α of the peak (min–max), largest |peak|, median |dF/dα|")
    for t in tasks:
        p = out[t]["peaks"]
        a = sorted(x["alpha"] for x in p)
        print(f"  {t}: peak α in [{a[0]:.2f}, {a[-1]:.2f}] (median {a[len(a) // 2]:.2f}); largest |dF/dα| "
              f"{max(abs(x['max_dF']) for x in p):.0f}; median of per-prompt median |dF/dα| "
              f"{sorted(x['median_dF'] for x in p)[len(p) // 2]:.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": args.model, "n": args.n, "completeness": out}, fh, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="zoo:toy-lm")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--tasks", default="facts,sentiment,greater-than")
    parser.add_argument("--json", default=None)
    parser.add_argument("--methods", default=None, help="comma-separated method names (default: all registered)")
    parser.add_argument("--ig-baselines", action="store_true", help="add one IG row per baseline")
    parser.add_argument("--completeness", action="store_true", help="IG completeness per rule instead of hit rates")
    parser.add_argument("--baseline", default="pad", choices=["pad", "zero"], help="IG baseline for --completeness")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    if args.completeness:
        return main_completeness(args)
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
