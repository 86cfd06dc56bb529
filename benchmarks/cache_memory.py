"""Peak memory of caching one site over a dataset 10x larger than the memory budget.

Runs each strategy in its own subprocess (so peaks do not mix) and prints peak RSS above
the process's baseline (model loaded, prompts tokenised):

* ``shared-cache``: ``SharedCache(..., memory_budget=B)`` — spills to disk past B;
* ``tl-loop``: the usual TransformerLens loop, ``run_with_cache`` per batch and
  ``torch.cat`` of the kept activations in memory;
* ``forward-only``: the same batches with nothing kept — the memory the forward passes
  themselves need (allocator pools, intermediate tensors). Subtracting it leaves the
  memory that holding the activations costs, which is what the budget bounds.

Usage: ``python benchmarks/cache_memory.py [--budget-mb 40] [--factor 10]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time


def _peak_rss_during(fn) -> tuple[float, float, float]:
    import psutil

    proc = psutil.Process()
    baseline = proc.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    return baseline / 1e6, (peak - baseline) / 1e6, seconds


def _worker(strategy: str, budget_mb: float, factor: float) -> dict:
    import tempfile

    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from mechinterp import SharedCache

    torch.set_num_threads(2)
    cfg = HookedTransformerConfig(n_layers=4, d_model=256, n_heads=8, d_head=32, d_mlp=1024, n_ctx=128, d_vocab=1000,
                                  act_fn="gelu", normalization_type="LN", seed=0)
    model = HookedTransformer(cfg).eval()
    per_prompt = cfg.n_ctx * cfg.d_model * 4
    n = int(factor * budget_mb * 1e6 / per_prompt)
    tokens = torch.randint(0, cfg.d_vocab, (n, cfg.n_ctx))
    site = "blocks.2.hook_resid_post"
    batch = 32

    if strategy == "shared-cache":
        with tempfile.TemporaryDirectory() as tmp:
            cache = SharedCache(model, tokens, batch_size=batch, memory_budget=budget_mb * 1e6, spill_dir=tmp, progress=False)
            base, peak, secs = _peak_rss_during(lambda: cache.fetch([site]))
            checksum = float(cache[site][::97].sum())
    elif strategy == "forward-only":

        def run() -> None:
            with torch.inference_mode():
                for i in range(0, n, batch):
                    model(tokens[i : i + batch], stop_at_layer=3)

        base, peak, secs = _peak_rss_during(run)
        checksum = float("nan")
    else:
        kept: list[torch.Tensor] = []

        def loop() -> None:
            with torch.inference_mode():
                for i in range(0, n, batch):
                    _, c = model.run_with_cache(tokens[i : i + batch], names_filter=site, stop_at_layer=3)
                    kept.append(c[site])
            kept[:] = [torch.cat(kept)]

        base, peak, secs = _peak_rss_during(loop)
        checksum = float(kept[0][::97].sum())
    return {"strategy": strategy, "prompts": n, "dataset_mb": n * per_prompt / 1e6, "budget_mb": budget_mb,
            "baseline_rss_mb": base, "peak_rss_above_baseline_mb": peak, "seconds": secs, "checksum": checksum}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget-mb", type=float, default=40)
    parser.add_argument("--factor", type=float, default=10)
    parser.add_argument("--worker", default=None)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.budget_mb, args.factor)))
        return
    rows = []
    for strategy in ("forward-only", "shared-cache", "tl-loop"):
        out = subprocess.run([sys.executable, __file__, "--worker", strategy, "--budget-mb", str(args.budget_mb),
                              "--factor", str(args.factor)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    compute = rows[0]["peak_rss_above_baseline_mb"]
    print(f"{'strategy':<14}{'prompts':>9}{'dataset MB':>12}{'budget MB':>11}{'peak RSS +MB':>14}"
          f"{'minus forward-only':>20}{'seconds':>9}")
    for r in rows:
        print(f"{r['strategy']:<14}{r['prompts']:>9}{r['dataset_mb']:>12.0f}{r['budget_mb']:>11.0f}"
              f"{r['peak_rss_above_baseline_mb']:>14.1f}{r['peak_rss_above_baseline_mb'] - compute:>20.1f}{r['seconds']:>9.1f}")
    ours, theirs = rows[1], rows[2]
    same = abs(ours["checksum"] - theirs["checksum"]) < 1e-3 * max(1.0, abs(theirs["checksum"]))
    print(f"same values: {same}; activation memory: shared-cache {ours['peak_rss_above_baseline_mb'] - compute:.1f} MB "
          f"(budget {ours['budget_mb']:.0f} MB), tl-loop {theirs['peak_rss_above_baseline_mb'] - compute:.1f} MB")


if __name__ == "__main__":
    main()
