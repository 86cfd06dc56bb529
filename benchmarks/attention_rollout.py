"""Benchmark: attention rollout over 12 layers x 512 tokens, as a ratio to one forward pass.

Model: a random GPT-2-small-sized HookedTransformer (12 layers, 12 heads, d_model 768,
d_mlp 3072, vocab 50257, n_ctx 512), fp32, CPU. Measured in one run:

* ``forward``      one forward pass on a batch of 512-token prompts (inference mode);
* ``rollout``      ``rollout_from_patterns`` on the cached patterns: head mean, 0.5A+0.5I,
                   row renormalisation and 11 batched ``bmm`` of 512 x 512;
* ``reference``    the paper's reference code (Abnar & Zuidema's ``compute_joint_attention``,
                   numpy float64, one prompt at a time, every layer's joint attention kept,
                   after the head mean; numpy's BLAS limited to the same threads as torch),
                   the "peer" a user would otherwise copy — and a correctness check;
* ``end-to-end``   ``attention_rollout(model, tokens)``: the cache pass plus the rollout.

Run:  .venv/bin/python benchmarks/attention_rollout.py [--batch 1 4] [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch


def compute_joint_attention(att_mat: np.ndarray, add_residual: bool = True) -> np.ndarray:
    """Abnar & Zuidema's reference implementation (github.com/samiraabnar/attention_flow)."""
    if add_residual:
        residual_att = np.eye(att_mat.shape[1])[None, ...]
        aug_att_mat = att_mat + residual_att
        aug_att_mat = aug_att_mat / aug_att_mat.sum(axis=-1)[..., None]
    else:
        aug_att_mat = att_mat
    joint_attentions = np.zeros(aug_att_mat.shape)
    layers = joint_attentions.shape[0]
    joint_attentions[0] = aug_att_mat[0]
    for i in np.arange(1, layers):
        joint_attentions[i] = aug_att_mat[i].dot(joint_attentions[i - 1])
    return joint_attentions


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-ctx", type=int, default=512)
    parser.add_argument("--device", default="cpu", help="cpu (the reported setting) or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)  # numpy's BLAS gets the same number of threads as torch

    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from mechinterp import SharedCache
    from mechinterp.attention import attention_rollout, rollout_from_patterns

    cfg = HookedTransformerConfig(
        n_layers=12, n_heads=12, d_model=768, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=args.n_ctx,
        act_fn="gelu_new", normalization_type="LN", seed=0, device=args.device,
    )
    model = HookedTransformer(cfg)
    model.eval()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads={args.threads}")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"model: random GPT-2-small-sized, 12 layers x 12 heads, n_ctx={args.n_ctx}, fp32, {name}\n")
    print("| batch | forward (s) | rollout (s) | rollout / forward | reference numpy (s) | ours vs reference | end-to-end / forward |")
    print("|---|---|---|---|---|---|---|")
    for batch in args.batch:
        tokens = torch.randint(0, cfg.d_vocab, (batch, args.n_ctx), generator=torch.Generator().manual_seed(0))

        def forward() -> None:
            with torch.inference_mode():
                model(tokens.to(args.device))

        t_forward = timeit(forward, args.repeats)
        cache = SharedCache(model, tokens, positions="all", batch_size=batch, progress=False)
        patterns = cache.stack("pattern").permute(1, 0, 2, 3, 4).contiguous().to(args.device)  # [batch, layer, head, q, k]
        t_rollout = timeit(lambda: rollout_from_patterns(patterns), args.repeats)

        ours = rollout_from_patterns(patterns)
        patterns_np = patterns.cpu().numpy()

        def reference() -> list[np.ndarray]:  # head mean, as in the paper's notebook, then the reference
            return [compute_joint_attention(patterns_np[b].mean(axis=1))[-1] for b in range(batch)]

        t_ref = timeit(reference, max(1, args.repeats - 2))
        err = max(float(np.abs(ref - ours[b].double().cpu().numpy()).max()) for b, ref in enumerate(reference()))
        t_e2e = timeit(lambda: attention_rollout(model, tokens, batch_size=batch), max(1, args.repeats - 2))
        print(
            f"| {batch} | {t_forward:.3f} | {t_rollout:.4f} | {t_rollout / t_forward:.4f} | {t_ref:.3f} "
            f"| {t_ref / t_rollout:.1f}x faster, max abs diff {err:.1e} | {t_e2e / t_forward:.2f} |"
        )
        del cache, patterns


if __name__ == "__main__":
    main()
