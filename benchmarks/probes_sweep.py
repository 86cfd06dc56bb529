"""Benchmark: probing every layer with the batched torch trainer vs a per-layer scikit-learn loop,
and peak memory of a sweep on a dataset larger than the cache budget.

Run:  .venv/bin/python benchmarks/probes_sweep.py [--device cuda] [--n 2000] [--quality-only]
Prints one table per part; copy the numbers into benchmarks/results/probes.md.
``--quality-only`` fits once, without warm-up or timings, and prints only what depends on the
model's weights (per-probe accuracies, their difference from sklearn, the memory run's best
accuracy): the numbers to re-measure when the zoo model is retrained.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np
import psutil
import torch


def _peak_rss(fn):
    """Run ``fn`` while sampling RSS every 5 ms; return (result, peak RSS growth in bytes)."""
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        out = fn()
    finally:
        stop.set()
        thread.join()
    return out, max(peak[0], proc.memory_info().rss) - base


def speed(model, n: int, device: str, repeats: int = 2, quality_only: bool = False) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import mechinterp
    from mechinterp import probes

    task = mechinterp.tasks.load("sentiment", model, n=n, split="train")
    data = probes.from_task(model, task, "sentiment", site="resid_post", positions="all", progress=False)
    # one probe per (layer, position) over the positions every prompt has
    width = int(task.lengths.min())
    cells = [f[:, p] for f in data.features for p in range(width)]
    y = torch.as_tensor(data.y)
    X = torch.stack(cells).float()
    train, test = slice(0, int(0.75 * n)), slice(int(0.75 * n), n)
    print(f"\n## speed: {len(cells)} probes ({len(data.features)} layers x {width} positions), n={n}, d={data.d}, device={device}")
    timings, accuracies = {}, {}
    if quality_only:
        repeats = 1
    for solver in ("newton", "lbfgs"):
        if not quality_only:
            probes.fit_logistic(X[:2, :64], y[:64], 2, device=device, solver=solver)  # warm-up
        t_ours = []
        for _ in range(repeats):
            t = time.perf_counter()
            heads = probes.fit_logistic(X[:, train], y[train], 2, device=device, solver=solver)
            acc_ours = heads.accuracy(X[:, test].to(device), y[test].to(device)).cpu().numpy()
            if device == "cuda":
                torch.cuda.synchronize()
            t_ours.append(time.perf_counter() - t)
        timings[solver], accuracies[solver] = min(t_ours), acc_ours
    t = time.perf_counter()
    acc_sk = []
    for c in range(len(cells)):
        pipe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        pipe.fit(X[c, train].numpy(), y[train].numpy())
        acc_sk.append(pipe.score(X[c, test].numpy(), y[test].numpy()))
    t_sk = time.perf_counter() - t
    if quality_only:
        print("| method | mean / min / max per-probe test accuracy | max per-probe |acc diff| vs sklearn |")
        print("|---|---|---|")
        for solver, acc in accuracies.items():
            diff = np.abs(acc - np.asarray(acc_sk))
            print(f"| batched torch trainer, {solver} ({device}) | {acc.mean():.3f} / {acc.min():.3f} / {acc.max():.3f} | {diff.max() * 100:.2f} points |")
        sk = np.asarray(acc_sk)
        print(f"| per-probe sklearn loop (lbfgs) | {sk.mean():.3f} / {sk.min():.3f} / {sk.max():.3f} | - |")
        return
    print("| method | time (s) | ratio (sklearn / this) | max per-probe |acc diff| vs sklearn |")
    print("|---|---|---|---|")
    for solver, t_solver in timings.items():
        diff = np.abs(accuracies[solver] - np.asarray(acc_sk))
        print(f"| batched torch trainer, {solver} ({device}) | {t_solver:.2f} | {t_sk / t_solver:.1f}x | {diff.max() * 100:.2f} points |")
    print(f"| per-probe sklearn loop (lbfgs) | {t_sk:.2f} | 1.0x | - |")


def _rss_split() -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes of this process (Linux; zeros elsewhere)."""
    try:
        fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
        return tuple(int(fields[k].split()[0]) * 1024 for k in ("RssAnon", "RssFile"))  # type: ignore[return-value]
    except (OSError, KeyError):
        return 0, 0


def memory(model, n: int, budget_mb: float, warm_up: bool = True) -> None:
    """Peak RSS growth of ``from_task`` + ``probe_sweep`` on ``n`` prompts under a ``budget_mb`` cache budget.

    With ``warm_up`` the same pipeline first runs once on 64 prompts, before the baseline is
    taken: that run pays the one-off costs that are not data the library holds (the lazy
    ``sklearn.model_selection`` import of the CV splits, code pages of torch/LAPACK kernels faulted
    in by the first forward pass and the first Newton/eigh calls, the allocator's first arena
    growth), and they are printed separately.
    """
    import mechinterp
    from mechinterp import probes

    task = mechinterp.tasks.load("sentiment", model, n=n, split="train")
    budget = budget_mb * 1e6
    total = n * int(task.lengths.max()) * model.cfg.d_model * 4 * model.cfg.n_layers
    print(f"\n## memory: n={n}, every position of {model.cfg.n_layers} layers = {total / 1e6:.0f} MB of activations, "
          f"budget {budget_mb:.0f} MB")

    def run(task):
        data = probes.from_task(model, task, "sentiment", positions=slice(1, None), memory_budget=budget, batch_size=64, progress=False)
        return probes.probe_sweep(data, cv=3, n_random=2, chunk_rows=256)

    if warm_up:
        small = mechinterp.tasks.load("sentiment", model, n=64, split="train")
        anon, file = _rss_split()
        _, one_off = _peak_rss(lambda: run(small))
        anon2, file2 = _rss_split()
        print(f"warm-up (same pipeline, 64 prompts, before the baseline): peak RSS growth {one_off / 1e6:.0f} MB, "
              f"retained {(anon2 - anon) / 1e6:.0f} MB anonymous + {(file2 - file) / 1e6:.0f} MB file-backed (code pages)")
    result, grown = _peak_rss(lambda: run(task))
    print(f"| dataset activations | cache budget | peak RSS growth ({'after warm-up' if warm_up else 'cold'}) | best accuracy |")
    print("|---|---|---|---|")
    print(f"| {total / 1e6:.0f} MB | {budget_mb:.0f} MB | {grown / 1e6:.0f} MB | {result.best()[2]:.3f} |")
    print("under budget" if grown < budget else "OVER budget")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--mem-n", type=int, default=6000)
    parser.add_argument("--budget-mb", type=float, default=100)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--no-warm-up", action="store_true", help="memory run: take the baseline before any probing (one-off costs included)")
    parser.add_argument("--quality-only", action="store_true", help="no timings: only the weight-dependent numbers")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    import mechinterp

    model = mechinterp.load("zoo:toy-lm", device=args.device)
    print(f"machine: {psutil.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}")
    speed(model, args.n, args.device, quality_only=args.quality_only)
    if not args.skip_memory:
        memory(mechinterp.load("zoo:toy-lm"), args.mem_n, args.budget_mb, warm_up=not args.no_warm_up)


if __name__ == "__main__":
    main()
