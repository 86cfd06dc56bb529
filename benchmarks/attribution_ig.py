"""Benchmark: our integrated gradients vs captum, side by side in one run.

1. Single target: ``attribute(..., method="ig")`` vs captum ``LayerIntegratedGradients`` on
   ``model.embed`` — same model, same baseline (pad tokens, BOS kept), same Gauss–Legendre
   steps, all steps in one batch for both.
2. Generation attribution for 10 output tokens: ours (one teacher-forced pass over prompt +
   continuation per step chunk, one backward per output token, unembedding only at the 10
   positions) vs captum ``LLMGradientAttribution(LayerIntegratedGradients)`` (a separate IG
   run per output token).

Model: GPT-2-small-sized (12 layers, d_model 768, 12 heads, d_mlp 3072, vocab 50257) with
random weights. Accuracy: max |ours - captum| over the attribution matrix and both
convergence deltas. Prints a markdown table with the ratio; ``--json`` writes the numbers.

Usage:
    python benchmarks/attribution_ig.py [--device cpu|cuda] [--steps 32] [--gen-steps 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from types import SimpleNamespace

import torch


def build(device: str, n_layers: int = 12):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from mechinterp.zoo.tokenizer import word_tokenizer

    words = [f"w{i}" for i in range(50257 - 3)]
    tokenizer = word_tokenizer(words, tempfile.mkdtemp())
    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024,
                                  d_vocab=50257, act_fn="gelu_new", normalization_type="LN", seed=0, device=device)
    model = HookedTransformer(cfg, tokenizer=tokenizer).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def timed(fn, repeats: int, device: str):
    best, out = float("inf"), None
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def timed_pair(fa, fb, repeats: int, device: str):
    """Best-of-``repeats`` times of ``fa`` and ``fb``, interleaved (a, b, a, b, ...) so that both see the same load."""
    ta, tb = float("inf"), float("inf")
    for _ in range(repeats):
        t, out_a = timed(fa, 1, device)
        ta = min(ta, t)
        t, out_b = timed(fb, 1, device)
        tb = min(tb, t)
    return ta, out_a, tb, out_b


class HFLike(torch.nn.Module):
    """The TL model behind the Hugging Face interface captum's LLM classes expect."""

    def __init__(self, tl):
        super().__init__()
        self.tl = tl

    @property
    def device(self):
        return self.tl.cfg.device

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return SimpleNamespace(logits=self.tl(input_ids))


def profile_both(ours, captum, device: str) -> None:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    key = "cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    for name, fn in (("ours", ours), ("captum", captum)):
        with profile(activities=acts) as prof:
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
        print(f"\n--- profile: {name} ---")
        print(prof.key_averages().table(sort_by=key, row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--gen-steps", type=int, default=16)
    parser.add_argument("--gen-tokens", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top ops for ours and captum (single target)")
    parser.add_argument("--no-gen", action="store_true", help="skip the generation-attribution case")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    from mechinterp.attribution import Continuation, attribute

    model = build(args.device)
    gen = torch.Generator().manual_seed(0)
    words = torch.randint(3, 50257, (args.prompt_len - 1,), generator=gen)
    prompt = torch.cat([torch.tensor([model.tokenizer.bos_token_id]), words])
    target = int(torch.randint(3, 50257, (1,), generator=gen))
    pad = model.tokenizer.pad_token_id
    rows = []

    # 1. single target
    tokens = prompt.unsqueeze(0).to(args.device)
    baseline = torch.full_like(tokens, pad)
    baseline[:, 0] = tokens[:, 0]
    lig = LayerIntegratedGradients(lambda t: model(t)[:, -1, target], model.embed)

    def captum_single():
        return lig.attribute(tokens, baselines=baseline, n_steps=args.steps, method="gausslegendre",
                             internal_batch_size=args.steps, return_convergence_delta=True)

    def ours_single():
        return attribute(model, prompt, target, method="ig", baseline="pad", n_steps=args.steps,
                         internal_batch_size=args.steps, warn=False)

    ours_single(), captum_single()  # warm-up
    t_ours, ours, t_cap, (ref, delta) = timed_pair(ours_single, captum_single, args.repeats, args.device)
    # captum runs the unchanged TL model: our fused GELU is swapped in only inside our calls
    assert all(b.mlp.act_fn.__name__ == "gelu_new" for b in model.blocks), "the model was left with a swapped activation"
    if args.profile:
        profile_both(ours_single, captum_single, args.device)
    gap = ours.metadata["target_values"][0] - ours.metadata["baseline_values"][0]
    rows.append({"case": f"IG, 1 target, {args.prompt_len} tokens, {args.steps} GL steps", "ours_s": t_ours, "captum_s": t_cap,
                 "max_abs_diff": float((ours.scores[0] - ref.sum(-1)[0].float().cpu()).abs().max()),
                 "ours_rel_delta": ours.metadata["relative_delta"][0], "captum_rel_delta": abs(float(delta)) / abs(gap)})

    # 2. generation attribution, 10 output tokens
    if args.no_gen:
        _report(args, rows)
        return
    with torch.no_grad():
        seq = tokens
        for _ in range(args.gen_tokens):
            seq = torch.cat([seq, model(seq)[:, -1:].argmax(-1)], dim=1)
    cont = seq[0, args.prompt_len:].cpu()
    text = " ".join(model.tokenizer.convert_ids_to_tokens(words.tolist()))
    if model.tokenizer.encode(text)[:1] != [model.tokenizer.bos_token_id]:  # TL's tokenizer adds BOS itself
        text = model.tokenizer.bos_token + " " + text
    hf = HFLike(model)
    llm = LLMGradientAttribution(LayerIntegratedGradients(hf, model.embed), model.tokenizer)
    inp = TextTokenInput(text, model.tokenizer, baselines=pad, skip_tokens=[model.tokenizer.bos_token_id])
    assert inp.inp_tensor[0].tolist() == prompt.tolist(), "captum tokenised the prompt differently"

    def captum_gen():
        return llm.attribute(inp, target=cont.to(args.device), n_steps=args.gen_steps, internal_batch_size=args.gen_steps)

    def ours_gen():
        return attribute(model, prompt, Continuation(cont), method="ig", baseline="pad", n_steps=args.gen_steps,
                         internal_batch_size=args.gen_steps, warn=False)

    t_ours_g, ours_g = timed(ours_gen, 1, args.device)
    t_cap_g, ref_g = timed(captum_gen, 1, args.device)
    diff = float((ours_g.scores[:, 1:] - ref_g.token_attr.float().cpu()).abs().max())
    rows.append({"case": f"generation IG, {args.gen_tokens} output tokens, {args.gen_steps} GL steps", "ours_s": t_ours_g,
                 "captum_s": t_cap_g, "max_abs_diff": diff, "ours_rel_delta": max(ours_g.metadata["relative_delta"]),
                 "captum_rel_delta": float("nan")})

    _report(args, rows)


def _report(args, rows) -> None:
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or 'cpu'}, {args.threads} thread(s)"
    print(f"\nmachine: {device_name}; torch {torch.__version__}; GPT-2-small-sized random model (fp32)\n")
    print("| case | ours (s) | captum (s) | speed-up | max abs diff | ours rel. delta | captum rel. delta |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['ours_s']:.2f} | {r['captum_s']:.2f} | {r['captum_s'] / r['ours_s']:.2f}x | "
              f"{r['max_abs_diff']:.1e} | {r['ours_rel_delta']:.1e} | {r['captum_rel_delta']:.1e} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": device_name, "torch": torch.__version__, "rows": rows, "args": vars(args)}, fh, indent=2)


if __name__ == "__main__":
    main()
