"""SharedCache on a GPU: keeping activations on the device (``store_device="model"``) vs copying to the host.

Same model, prompts and sites in one run; values must be identical. Usage (GPU machine):
``python benchmarks/cache_device.py --device cuda``.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--pos", type=int, default=64)
    args = parser.parse_args()
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from mechinterp import SharedCache
    from mechinterp.core.tokens import Tokenized

    cfg = HookedTransformerConfig(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257,
                                  n_ctx=1024, act_fn="gelu_new", normalization_type="LN", device=args.device, seed=0)
    model = HookedTransformer(cfg).eval()
    tokens = torch.randint(0, cfg.d_vocab, (args.n, args.pos), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(tokens)
    inputs = Tokenized(tokens, mask, mask.sum(1), "right")
    sites = [("resid_post", layer) for layer in range(12)]
    times, values = {}, {}
    for store in ("cpu", "model", "cpu", "model"):  # twice each: the first of each is a warm-up
        cache = SharedCache(model, inputs, batch_size=64, store_device=store, progress=False)
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        cache.fetch(sites)
        if args.device == "cuda":
            torch.cuda.synchronize()
        times[store] = time.perf_counter() - start
        values[store] = cache["resid_post", 11][:4].cpu()
    assert torch.equal(values["cpu"], values["model"])
    gb = args.n * args.pos * 768 * 4 * 12 / 1e9
    print(f"{args.n} prompts x {args.pos} positions, resid_post of 12 layers ({gb:.1f} GB), GPT-2-small-sized, {args.device}")
    print("| store_device | seconds | speed-up |")
    print("|---|---|---|")
    print(f"| cpu (default) | {times['cpu']:.2f} | 1.0x |")
    print(f"| model | {times['model']:.2f} | {times['cpu'] / times['model']:.1f}x |")


if __name__ == "__main__":
    main()
