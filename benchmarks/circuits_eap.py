"""Benchmark: our EAP / batched edge patching vs a naive per-edge patching loop and an EAP-IG-structured EAP.

One run, side by side, printing ratios:

* ``eap``            — ours: corrupted cache + 1 clean forward + 1 backward (mechinterp.circuits).
* ``eap-ref``        — the structure of the EAP-IG reference implementation (Hanna et al.):
                       TL ``use_attn_result`` + ``use_split_qkv_input``, activation-difference
                       matrix filled by forward hooks, gradients read by backward hooks on every
                       receiver input. Scores are checked equal to ours.
* ``exact-batched``  — ours: every edge patched alone, 32 masks per forward pass.
* ``exact-naive``    — one forward pass per edge with plain TL hooks (timed on a sample of
                       edges, extrapolated to all); scores are checked equal to ours.
* ``eap-ig-5``, ``acdc`` — wall time for the other scorers.

Usage::

    python benchmarks/circuits_eap.py                    # zoo:toy-lm IOI on CPU
    python benchmarks/circuits_eap.py --gpt2-sized --device cuda --n 64   # random GPT-2-small shape, IOI-shaped inputs
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from mechinterp.circuits import acdc_scores, eap_ig_inputs_scores, eap_scores, edge_mode, exact_scores, prepare_edge_patching


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Any, device: str, repeat: int = 1) -> tuple[Any, float]:
    out = fn()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    _sync(device)
    return out, (time.perf_counter() - start) / repeat


def eap_reference_structure(model: Any, clean: torch.Tensor, corrupted: torch.Tensor, metric: Any, graph: Any) -> torch.Tensor:
    """EAP as the EAP-IG reference code is built: use_attn_result, forward hooks fill an activation-difference
    matrix [batch, pos, n_senders, d_model], backward hooks on receiver inputs accumulate scores."""
    cfg = model.cfg
    saved = cfg.use_attn_result
    cfg.use_attn_result = True
    try:
        with edge_mode(model):
            diff = torch.zeros(clean.shape[0], clean.shape[1], graph.n_senders, cfg.d_model, device=clean.device)
            scores = torch.zeros(graph.n_senders, graph.n_receivers, device=clean.device)

            def out_hook(index: Any, sign: float) -> Any:
                def hook(x: torch.Tensor, hook: Any) -> None:
                    x = x if x.ndim == 4 else x[:, :, None]
                    diff[:, :, index] += sign * x.detach()
                return hook

            fwd = [("blocks.0.hook_resid_pre", slice(0, 1))]
            for layer in range(cfg.n_layers):
                heads, mlp = graph.layer_senders(layer)
                fwd.append((f"blocks.{layer}.attn.hook_result", heads))
                if mlp is not None:
                    fwd.append((f"blocks.{layer}.hook_mlp_out", slice(mlp, mlp + 1)))

            def grad_hook(cols: Any, upto: int) -> Any:
                def hook(g: torch.Tensor, hook: Any) -> None:
                    g = g if g.ndim == 4 else g[:, :, None]
                    scores[:upto, cols] += torch.einsum("bpsd,bprd->sr", diff[:, :, :upto], g)
                return hook

            bwd = []
            for layer in range(cfg.n_layers):
                qkv, mlp = graph.layer_receivers(layer)
                upto = graph.layer_senders(layer)[0].start
                for part, name in enumerate("qkv"):
                    bwd.append((f"blocks.{layer}.hook_{name}_input", grad_hook(list(range(qkv.start + part, qkv.stop, 3)), upto)))
                if mlp is not None:
                    bwd.append((f"blocks.{layer}.hook_mlp_in", grad_hook([mlp], graph.layer_senders(layer)[1])))
            bwd.append((f"blocks.{cfg.n_layers - 1}.hook_resid_post", grad_hook([graph.n_receivers - 1], graph.n_senders)))
            with torch.no_grad(), model.hooks(fwd_hooks=[(n, out_hook(i, 1.0)) for n, i in fwd]):
                model(corrupted)
            with model.hooks(fwd_hooks=[(n, out_hook(i, -1.0)) for n, i in fwd], bwd_hooks=bwd):
                metric(model(clean)).mean().backward()
    finally:
        cfg.use_attn_result = saved
        model.zero_grad(set_to_none=True)
    return scores * graph.real.to(scores.device)


def naive_edge_patch(model: Any, setup: Any, metric: Any, edges: list[tuple[int, int]]) -> list[float]:
    """One forward per edge with plain TL hooks: receiver input += patched_s - out_s (sender read live)."""
    g = setup.graph
    cfg = model.cfg
    results = []
    for s, r in edges:
        live: dict[str, torch.Tensor] = {}
        name = g.senders[s]
        if name == "embed":
            s_hook, s_fn = "blocks.0.hook_resid_pre", lambda x: x
        elif name.startswith("MLP"):
            s_hook, s_fn = f"blocks.{name[3:]}.hook_mlp_out", lambda x: x
        else:
            layer, head = (int(v) for v in name[1:].split("H"))
            w = model.blocks[layer].attn.W_O[head]
            s_hook, s_fn = f"blocks.{layer}.attn.hook_z", lambda z, head=head, w=w: z[:, :, head] @ w

        def save(x: torch.Tensor, hook: Any) -> None:
            live["out"] = s_fn(x)

        rname = g.receivers[r]
        patched = setup.patched[:, :, s]
        if rname == "logits":
            r_hook, head_idx = f"blocks.{cfg.n_layers - 1}.hook_resid_post", None
        elif rname.startswith("MLP"):
            r_hook, head_idx = f"blocks.{rname[3:]}.hook_mlp_in", None
        else:
            node, part = rname.split(".")
            layer, head_idx = (int(v) for v in node[1:].split("H"))
            r_hook = f"blocks.{layer}.hook_{part}_input"

        def patch(x: torch.Tensor, hook: Any, head_idx: Any = head_idx) -> torch.Tensor:
            delta = patched - live["out"]
            if head_idx is None:
                return x + delta
            x = x.clone()
            x[:, :, head_idx] += delta
            return x

        with torch.no_grad(), edge_mode(model), model.hooks(fwd_hooks=[(s_hook, save), (r_hook, patch)]):
            results.append(float(metric(model(setup.tokens)).mean()))
    return results


def gpt2_sized(device: str, n: int) -> tuple[Any, Any, Any, Any]:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_ctx=64, d_vocab=50257,
                                  act_fn="gelu_new", normalization_type="LN", device=device, seed=0)
    model = HookedTransformer(cfg)
    model.eval()
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 50257, (n, 20), generator=gen).to(device)
    corrupted = clean.clone()
    corrupted[:, 2] = torch.randint(0, 50257, (n,), generator=gen).to(device)  # IOI-shaped: one name swapped
    a, b = torch.randint(0, 50257, (2, n), generator=gen).to(device)
    return model, clean, corrupted, lambda logits: logits[torch.arange(n), -1, a] - logits[torch.arange(n), -1, b]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--gpt2-sized", action="store_true")
    parser.add_argument("--naive-sample", type=int, default=64, help="edges timed in the exact comparison")
    parser.add_argument("--chunk", type=int, default=32, help="masks per batched pass")
    parser.add_argument("--acdc", action="store_true", help="also time ACDC (slow on GPT-2-sized)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    if args.gpt2_sized:
        model, clean, corrupted, metric = gpt2_sized(args.device, args.n)
        label = f"GPT-2-small-sized random, {args.n} prompts x 20 positions"
    else:
        import mechinterp

        model = mechinterp.load("zoo:toy-lm", device=args.device)
        task = mechinterp.tasks.load("ioi", model, n=args.n)
        clean, corrupted, metric = task.clean_tokens.to(args.device), task.corrupted_tokens.to(args.device), task.metric
        label = f"zoo:toy-lm IOI, {args.n} prompts x {clean.shape[1]} positions"
    for p in model.parameters():
        p.requires_grad_(False)
    setup, t_prep = timed(lambda: prepare_edge_patching(model, clean, corrupted, "corrupted"), args.device)
    g = setup.graph
    rows = {"graph": f"{g.n_senders} senders, {g.n_receivers} receivers, {g.n_edges} edges", "workload": label,
            "device": str(torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu (1 thread)")}
    eap, t_eap = timed(lambda: eap_scores(model, setup, metric), args.device, repeat=3)
    for p in model.parameters():
        p.requires_grad_(True)
    ref, t_ref = timed(lambda: eap_reference_structure(model, clean, corrupted, metric, g), args.device, repeat=3)
    for p in model.parameters():
        p.requires_grad_(False)
    rows["eap_vs_ref_max_abs_diff"] = float((eap - ref.to(eap.device)).abs().max())
    times = {"prepare (clean + corrupted caches)": t_prep, "eap (ours, after prepare)": t_eap,
             "eap total (ours: prepare + eap)": t_prep + t_eap, "eap-ref structure (2 fwd + 1 bwd)": t_ref}
    ig, times["eap-ig-inputs, 5 steps"] = timed(lambda: eap_ig_inputs_scores(model, setup, metric, steps=5), args.device)
    edges = torch.nonzero(g.real).tolist()
    gen = torch.Generator().manual_seed(0)
    sample = [edges[i] for i in torch.randperm(len(edges), generator=gen)[: args.naive_sample].sort().values.tolist()]
    cand = torch.zeros_like(g.real)
    for s_, r_ in sample:
        cand[s_, r_] = True
    exact, t_exact = timed(lambda: exact_scores(model, setup, metric, chunk=args.chunk, candidates=cand), args.device)
    base = float(metric(model(clean)).mean())
    naive, t_naive = timed(lambda: naive_edge_patch(model, setup, metric, sample), args.device)
    times[f"exact batched ({args.chunk} masks/pass), {len(sample)} sampled edges"] = t_exact
    times[f"exact naive loop (1 pass/edge), {len(sample)} sampled edges"] = t_naive
    rows["exact_vs_naive_max_abs_diff"] = max(abs(exact[s_, r_].item() - (v - base)) for (s_, r_), v in zip(sample, naive))
    rows["naive_loop_all_edges_extrapolated_s"] = t_naive / len(sample) * len(edges)
    if args.acdc or not args.gpt2_sized:
        (_, info), times["acdc (kl, 5 thresholds)"] = timed(
            lambda: acdc_scores(model, setup, metric, thresholds=[1e-3, 3e-3, 1e-2, 3e-2, 0.1]), args.device)
        rows["acdc_passes"] = sum(r["passes"] for r in info["sweep"])
    rows["times_s"] = times
    rows["ratios"] = {
        "eap-ref / eap (per-call)": t_ref / t_eap,
        "naive exact / batched exact (same edges)": t_naive / t_exact,
        "naive exact, all edges (extrapolated) / eap total": rows["naive_loop_all_edges_extrapolated_s"] / (t_prep + t_eap),
    }
    print(json.dumps(rows, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
