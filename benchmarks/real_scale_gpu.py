"""Benchmark at real-model scale: a Llama-3.2-1B-shaped model, ours vs the peers, bf16 and fp32.

Random weights with the shape of Llama-3.2-1B (16 layers, d_model 2048, 32 heads, 8 key/value
heads, d_mlp 8192, vocab 128256, RMSNorm, rotary, SwiGLU). One process, each workload timed
for ours and the peer back to back after a warm-up, with peak GPU memory of each:

* activation patching, ``resid_pre`` by layer x position: ours vs TransformerLens's
  ``get_act_patch_resid_pre`` (one forward pass per patched index);
* activation patching, ``z`` by layer x head (all positions): ours vs TL's
  ``get_act_patch_attn_head_out_all_pos``;
* integrated gradients on one prompt: ours (``attribute(method="ig")``) vs captum's
  ``LayerIntegratedGradients`` on the embedding, same steps, same baseline;
* EAP-IG (over inputs, 5 steps) on the edge graph: wall time and memory (no peer on TL).

Each row also gives the FLOP floor of the workload: the forward/backward FLOPs the method
cannot avoid, as 2 x (non-embedding parameters + attention scores) per token, and how long
that takes at the GPU's dense matmul rate. Prints a markdown table; ``--json`` writes it.

Usage::

    python benchmarks/real_scale_gpu.py --device cuda --dtype bfloat16 --json out.json
    python benchmarks/real_scale_gpu.py --tiny            # a small shape on the CPU, to check the script
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

LLAMA_1B = dict(n_layers=16, d_model=2048, n_heads=32, n_key_value_heads=8, d_head=64, d_mlp=8192, d_vocab=128256)
TINY = dict(n_layers=2, d_model=64, n_heads=4, n_key_value_heads=2, d_head=16, d_mlp=128, d_vocab=512)


def build(shape: dict, device: str, dtype: torch.dtype):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        **shape, n_ctx=256, act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary",
        rotary_dim=shape["d_head"], rotary_base=500000, gated_mlp=True, final_rms=True, eps=1e-5,
        original_architecture="LlamaForCausalLM", seed=0, device=device, dtype=torch.float32,
    )
    model = HookedTransformer(cfg, move_to_device=False)
    model.to(device, print_details=False)
    model.to(dtype, print_details=False)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def flops_per_token(cfg, n_pos: int) -> float:
    """Forward FLOPs per token: 2 x matmul parameters (no embedding, with unembedding) + attention."""
    d, h, kv, dh, m = cfg.d_model, cfg.n_heads, cfg.n_key_value_heads or cfg.n_heads, cfg.d_head, cfg.d_mlp
    per_layer = d * h * dh * 2 + d * kv * dh * 2 + 3 * d * m
    attn = 2 * h * dh * n_pos  # scores and weighted sum, average causal length ~ n_pos / 2, x2 ops
    return 2 * cfg.n_layers * (per_layer + attn / 2) + 2 * d * cfg.d_vocab


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(fn, device: str, repeats: int):
    """(best seconds, peak extra GPU bytes, output) after one warm-up call."""
    out = fn()
    best, peak = float("inf"), 0
    for _ in range(repeats):
        sync(device)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
        if device.startswith("cuda"):
            peak = max(peak, torch.cuda.max_memory_allocated() - base)
    return best, peak, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--n-pos", type=int, default=20)
    parser.add_argument("--ig-steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense matmul rate for the floor (default: 790 bf16 / 50 fp32 on H100-class, 0.1 on CPU)")
    parser.add_argument("--only", nargs="*", default=["resid_pre", "z", "ig", "eap-ig"])
    parser.add_argument("--eap-batch-size", type=int, default=None,
                        help="with --only eap-ig-chunked: EAP-IG in chunks of this many prompts (discover(batch_size=...)'s route)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from transformer_lens import patching as tlp

    from mechinterp.attribution import attribute
    from mechinterp.circuits import eap_ig_inputs_scores, prepare_edge_patching
    from mechinterp.patching import activation_patch

    dtype = getattr(torch, args.dtype)
    model = build(TINY if args.tiny else LLAMA_1B, args.device, dtype)
    cfg = model.cfg
    peak = args.peak_tflops or (0.1 if args.device == "cpu" else (790.0 if dtype != torch.float32 else 50.0))
    gen = torch.Generator().manual_seed(0)
    b, n = args.batch, args.n_pos
    clean = torch.randint(100, cfg.d_vocab, (b, n), generator=gen)
    corrupted = clean.clone()
    corrupted[:, n // 3] = torch.randint(100, cfg.d_vocab, (b,), generator=gen)
    correct, wrong = torch.randint(0, cfg.d_vocab, (2, b), generator=gen)
    clean, corrupted, correct, wrong = (t.to(args.device) for t in (clean, corrupted, correct, wrong))
    rows_idx = torch.arange(b, device=args.device)

    def metric(logits):
        return logits[rows_idx, -1, correct].float() - logits[rows_idx, -1, wrong].float()

    fpt = flops_per_token(cfg, n)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"Llama-3.2-1B-shaped random model ({'tiny' if args.tiny else 'full'}), {args.dtype}, {device_name}, "
          f"torch {torch.__version__}; {b} prompts x {n} positions; floor at {peak} TFLOP/s", flush=True)
    rows = []

    def row(name, t_ours, m_ours, t_peer, m_peer, floor_flops, diff, peer="-"):
        r = {"workload": name, "peer": peer, "ours_s": round(t_ours, 4), "peer_s": None if t_peer is None else round(t_peer, 4),
             "ratio": None if t_peer is None else round(t_peer / t_ours, 2), "ours_peak_gib": round(m_ours / 2**30, 2),
             "peer_peak_gib": None if m_peer is None else round(m_peer / 2**30, 2), "floor_tflop": round(floor_flops / 1e12, 2),
             "floor_s": round(floor_flops / (peak * 1e12), 4), "max_abs_diff": diff}
        rows.append(r)
        print(json.dumps(r), flush=True)

    # floors: a (layer l, position p) patch recomputes layers >= l at positions >= p, logits at the last position;
    # a (layer l, head) patch over all positions recomputes layers >= l everywhere
    suffix = sum((cfg.n_layers - layer) / cfg.n_layers * (n - p) for layer in range(cfg.n_layers) for p in range(n))
    later = sum((cfg.n_layers - layer) / cfg.n_layers for layer in range(cfg.n_layers))
    sweeps = {
        "resid_pre": (dict(site="resid_pre", by="position"), ("get_act_patch_resid_pre", tlp.get_act_patch_resid_pre),
                      f"resid_pre by layer x position ({cfg.n_layers * n} patches)",
                      b * (fpt - 2 * cfg.d_model * cfg.d_vocab) * suffix + b * cfg.n_layers * 2 * cfg.d_model * cfg.d_vocab),
        "z": (dict(site="z", by="head"), ("get_act_patch_attn_head_out_all_pos", tlp.get_act_patch_attn_head_out_all_pos),
              f"z by layer x head ({cfg.n_layers * cfg.n_heads} patches)", b * n * later * cfg.n_heads * fpt),
    }
    for key, (options, (tl_name, tl_fn), label, floor) in sweeps.items():
        if key not in args.only:
            continue

        def tl(tl_fn=tl_fn):
            with torch.no_grad():
                _, cache = model.run_with_cache(clean)
                return tl_fn(model, corrupted, cache, lambda lg: metric(lg).mean())

        def ours(options=options):
            with torch.no_grad():
                return activation_patch(model, clean, corrupted, metric, normalise=False, **options).raw

        to, mo, out_o = measure(ours, args.device, args.repeats)
        tt, mt, out_t = measure(tl, args.device, args.repeats)
        row(label, to, mo, tt, mt, floor, float((out_o.float().cpu() - out_t.float().cpu()).abs().max()),
            f"TL {tl_name}")

    if "ig" in args.only:
        from captum.attr import LayerIntegratedGradients

        prompt = clean[0]
        target = int(correct[0])
        steps = args.ig_steps
        lig = LayerIntegratedGradients(lambda t: model(t)[:, -1, target].float(), model.embed)
        base = torch.zeros_like(prompt)

        def captum():
            return lig.attribute(prompt[None], baselines=base[None], n_steps=steps, method="gausslegendre",
                                 internal_batch_size=steps, return_convergence_delta=True)

        def ours():
            return attribute(model, prompt, target, method="ig", baseline=0, keep_first_token=False, n_steps=steps,  # as captum
                             internal_batch_size=steps, warn=False)

        to, mo, out_o = measure(ours, args.device, args.repeats)
        tt, mt, (ref, _) = measure(captum, args.device, args.repeats)
        diff = float((out_o.scores[0].float().cpu() - ref.sum(-1)[0].float().cpu()).abs().max())
        row(f"IG, 1 prompt x {n} tokens, {steps} steps, token-0 baseline", to, mo, tt, mt, 3 * steps * n * fpt, diff, "captum LayerIntegratedGradients")

    if "eap-ig" in args.only:
        def ours():
            setup = prepare_edge_patching(model, clean, corrupted, "corrupted")
            return eap_ig_inputs_scores(model, setup, metric, steps=5)

        to, mo, scores = measure(ours, args.device, args.repeats)
        row("EAP-IG over inputs, 5 steps (2 caches + 5 fwd/bwd)", to, mo, None, None, (2 + 3 * 5) * b * n * fpt,
            float(scores.float().abs().max()))

    if "eap-ig-chunked" in args.only and args.eap_batch_size:
        from mechinterp.circuits.discover import _slice_setup

        k = args.eap_batch_size

        def chunked():
            setup = prepare_edge_patching(model, clean, corrupted, "corrupted")
            total = None
            for start in range(0, b, k):
                sel = list(range(start, min(start + k, b)))
                idx = torch.tensor(sel, device=args.device)

                def part_metric(logits, idx=idx):
                    r = torch.arange(len(idx), device=args.device)
                    return logits[r, -1, correct[idx]].float() - logits[r, -1, wrong[idx]].float()

                part = eap_ig_inputs_scores(model, _slice_setup(setup, sel, n), part_metric, steps=5) * (len(sel) / b)
                total = part if total is None else total + part
            return total

        tc, mc, chunk_scores = measure(chunked, args.device, args.repeats)
        row(f"EAP-IG over inputs, 5 steps, {k} prompts per backward (batch_size={k})", tc, mc, None, None,
            (2 + 3 * 5) * b * n * fpt, float(chunk_scores.float().abs().max()))

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name, "dtype": args.dtype, "batch": b, "n_pos": n, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
