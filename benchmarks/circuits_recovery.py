"""Circuit recovery on zoo:attn-only-2l induction: edge ROC AUC of every method against the
reference circuit, and the evidence for the reference itself (exact patching).

Run: ``python benchmarks/circuits_recovery.py [--n 12] [--seed 0]`` (CPU, about a minute).
Task: ``induction`` with ``corruption="random"``; every method gets the same task and ablation.
Prints markdown for ``benchmarks/results/circuits.md``:

1. the AUC table: every method, corrupted and mean ablation, against ``circuit.json``'s
   ``edges`` and against the old reference (``edges`` plus ``positional_edges``);
2. the reference check: the reference circuit's faithfulness, each reference edge's exact
   effect (patched alone) and the cost of knocking it out of the reference circuit, and the
   largest non-reference edges.
"""

from __future__ import annotations

import argparse
import time

import torch

import mechinterp
from mechinterp.circuits import compare_to_reference, discover, faithfulness, reference_mask, setup_for

METHODS = {
    "eap": {},
    "eap-ig-inputs": {},
    "eap-ig-activations": {},
    "exact": {},
    "acdc": {"distance": "kl"},
}


def recovery(model, task, ablation, references):
    setup = setup_for(model, task, ablation)
    rows = {}
    for method, options in METHODS.items():
        start = time.perf_counter()
        circuit = discover(model, task, method, ablation, setup=setup, **options)
        seconds = time.perf_counter() - start
        stats = [compare_to_reference(circuit, ref) for ref in references]
        rows[method] = (stats, seconds)
    return setup, rows


def reference_check(model, task, setup, ref, positional):
    g = setup.graph
    mask = reference_mask(g, ref)
    exact = discover(model, task, "exact", setup.ablation, setup=setup).scores
    idx = torch.nonzero(g.real).tolist()
    knock = torch.stack([mask & ~_one(g, i, j) for i, j in idx])
    f = faithfulness(model, setup, task.metric, torch.cat([mask[None], knock])).tolist()
    f_ref, f_knock = f[0], dict(zip(map(tuple, idx), f[1:]))
    lines = [f"reference faithfulness ({setup.ablation}): {f_ref:.3f}", ""]
    lines.append("| edge | in reference | exact effect (patched alone) | faithfulness lost when knocked out of the reference |")
    lines.append("|---|---|---|---|")
    order = sorted(idx, key=lambda e: -abs(float(exact[e[0], e[1]])))
    pos = reference_mask(g, positional) if positional else torch.zeros_like(mask)
    shown = 0
    for i, j in order:
        tag = "yes" if mask[i, j] else ("positional" if pos[i, j] else "no")
        if tag == "no" and shown >= 6:
            continue
        shown += tag == "no"
        lost = f"{f_ref - f_knock[(i, j)]:+.3f}" if mask[i, j] else "–"
        lines.append(f"| {g.senders[i]} → {g.receivers[j]} | {tag} | {float(exact[i, j]):+.3f} | {lost} |")
    return "\n".join(lines)


def _one(g, i, j):
    m = torch.zeros_like(g.real)
    m[i, j] = True
    return m


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = mechinterp.load("zoo:attn-only-2l")
    task = mechinterp.tasks.load("induction", model, n=args.n, seed=args.seed, corruption="random")
    ref = task.ground_truth.circuit
    positional = ref.get("positional_edges", [])
    old = {**ref, "edges": ref["edges"] + positional}
    print(f"## attn-only-2l induction, n={args.n}, seed={args.seed}\n")
    print("| ablation | reference | " + " | ".join(METHODS) + " |")
    print("|---|---|" + "---|" * len(METHODS))
    setups = {}
    for ablation in ("corrupted", "mean"):
        setup, rows = recovery(model, task, ablation, [ref, old])
        setups[ablation] = setup
        for k, name in enumerate(("circuit.json", "+ positional edges")):
            cells = [f"{rows[m][0][k]['auc']:.3f}" for m in METHODS]
            print(f"| {ablation} | {name} | " + " | ".join(cells) + " |")
        acdc = rows["acdc"][0][0]
        print(f"| {ablation} | acdc detail | ranking AUC {acdc.get('auc_ranking', float('nan')):.3f}, "
              f"pessimistic {acdc.get('auc_pessimistic', float('nan')):.3f} | "
              + " | ".join(f"{rows[m][1]:.2f} s" for m in METHODS) + " |")
    for ablation, setup in setups.items():
        print()
        print(reference_check(model, task, setup, ref, positional))


if __name__ == "__main__":
    main()
