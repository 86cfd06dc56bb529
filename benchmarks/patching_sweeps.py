"""Benchmark: our batched patching sweeps vs TransformerLens's ``patching`` module, side by side.

Sweeps: ``resid_pre`` by (layer, position) and per-head ``z`` by (layer, position, head), on
the IOI task of ``zoo:toy-lm`` (CPU) or on a GPT-2-small-sized random model (``--gpt2``,
for the GPU). Both compute the same numbers (checked: max |difference| printed); the
time of TL includes its ``run_with_cache`` of the clean run, ours includes every run it
needs. Prints one line per (sweep, batch size) with the ratio TL / ours.

Usage::

    python benchmarks/patching_sweeps.py                      # zoo:toy-lm, CPU, batches 4 16 32
    python benchmarks/patching_sweeps.py --gpt2 --device cuda --batches 1 16 64
    python benchmarks/patching_sweeps.py --full     # also ours with readout="full" (all logits)
    python benchmarks/patching_sweeps.py --model path/to/SmolLM2.gguf --task ioi-bpe --batches 4 8 --clock cpu

``--task ioi-bpe`` builds IOI pairs written for a BPE tokenizer (natural punctuation, single-token
names, the two names swapped in the corrupted prompt; the pairs of ``tests/real/test_patching.py``).
``--clock cpu`` times with ``time.process_time`` (CPU seconds of this process, one torch thread):
on a machine shared with other jobs wall time measures the other jobs as much as this one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
from real_prompts import ioi_swap_pairs as _ioi_bpe  # noqa: E402


def _gpt2_sized(device: str):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024, d_vocab=50257, act_fn="gelu_new",
        normalization_type="LN", seed=0, device=device,
    )
    return HookedTransformer(cfg).eval()



def _inputs(model, batch: int, n_pos: int, task_name: str | None, seed: int = 0):
    if task_name == "ioi-bpe":
        return _ioi_bpe(model, batch)
    if task_name is not None:
        import mechinterp

        task = mechinterp.tasks.load(task_name, model, n=batch, seed=seed)
        width = int(task.lengths.min())  # equal lengths: no padding, the same prompts for TL and us
        clean, corrupted = task.clean_tokens[:, :width], task.corrupted_tokens[:, :width]
    else:
        gen = torch.Generator().manual_seed(seed)
        clean = torch.randint(100, model.cfg.d_vocab, (batch, n_pos), generator=gen)
        corrupted = clean.clone()
        corrupted[:, n_pos // 3] = torch.randint(100, model.cfg.d_vocab, (batch,), generator=gen)
    gen = torch.Generator().manual_seed(seed + 1)
    correct, wrong = torch.randint(0, model.cfg.d_vocab, (2, batch), generator=gen)
    device = model.cfg.device
    correct, wrong = correct.to(device), wrong.to(device)
    rows = torch.arange(batch, device=device)

    def metric(logits):
        return logits[rows, -1, correct] - logits[rows, -1, wrong]

    return clean.to(device), corrupted.to(device), metric


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def bench(model, batch: int, n_pos: int, task_name: str | None, sweeps: list[str], repeats: int, full: bool = False,
          clock: str = "wall") -> list[dict]:
    from transformer_lens import patching as tlp

    from mechinterp.patching import activation_patch

    clean, corrupted, metric = _inputs(model, batch, n_pos, task_name)
    tl_metric = lambda logits: metric(logits).mean()  # noqa: E731
    table = {"resid_pre": ("position", tlp.get_act_patch_resid_pre), "z": ("head_position", tlp.get_act_patch_attn_head_out_by_pos)}
    rows = []
    for site in sweeps:
        by, tl_fn = table[site]

        def run_tl():
            with torch.no_grad():
                _, cache = model.run_with_cache(clean)
                return tl_fn(model, corrupted, cache, tl_metric)

        def run_ours(readout="auto"):
            with torch.no_grad():
                return activation_patch(model, clean, corrupted, metric, site=site, by=by, normalise=False, readout=readout).raw

        run_ours()  # warm-up (allocations, kernels)
        times = {}
        runs = [("tl", run_tl), ("ours", run_ours)] + ([("ours_full", lambda: run_ours("full"))] if full else [])
        timer = time.process_time if clock == "cpu" else time.perf_counter
        best = {name: float("inf") for name, _ in runs}
        for _ in range(repeats):  # interleaved, so that a change of machine load hits both sides
            for name, fn in runs:
                _sync(model.cfg.device)
                start = timer()
                out = fn()
                _sync(model.cfg.device)
                best[name] = min(best[name], timer() - start)
                times[name] = (best[name], out)
        diff = float((times["tl"][1].cpu() - times["ours"][1].cpu()).abs().max())
        rows.append({
            "sweep": f"{site} by {by}", "batch": batch, "n_pos": clean.shape[1], "tl_s": round(times["tl"][0], 3),
            "ours_s": round(times["ours"][0], 3), "ratio": round(times["tl"][0] / times["ours"][0], 2), "max_abs_diff": diff,
        })
        extra = ""
        if full:
            rows[-1]["ours_full_s"] = round(times["ours_full"][0], 3)
            rows[-1]["ratio_full"] = round(times["tl"][0] / times["ours_full"][0], 2)
            extra = f"  (full logits: {times['ours_full'][0]:7.3f} s, {rows[-1]['ratio_full']:6.2f}x)"
        print(f"{rows[-1]['sweep']:<26} batch {batch:>3} pos {clean.shape[1]:>3}  TL {times['tl'][0]:8.3f} s  "
              f"ours {times['ours'][0]:7.3f} s  ratio {rows[-1]['ratio']:6.2f}x  max|diff| {diff:.1e}{extra}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="zoo:toy-lm")
    parser.add_argument("--task", default="ioi")
    parser.add_argument("--gpt2", action="store_true", help="a GPT-2-small-sized random model instead of --model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 16, 32])
    parser.add_argument("--n-pos", type=int, default=20, help="positions (random-token inputs of --gpt2)")
    parser.add_argument("--sweeps", nargs="+", default=["resid_pre", "z"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--full", action="store_true", help="also time ours with readout='full' (all logits, full last block)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall time, or CPU time of this process")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.gpt2:
        model, task_name = _gpt2_sized(args.device), None
    else:
        import mechinterp

        model, task_name = mechinterp.load(args.model, device=args.device), args.task
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or platform.machine()
    print(f"model {'gpt2-sized random' if args.gpt2 else args.model}, device {args.device} ({device_name}), "
          f"threads {args.threads}, torch {torch.__version__}, clock {args.clock}")
    rows = []
    for batch in args.batches:
        rows += bench(model, batch, args.n_pos, task_name, args.sweeps, args.repeats, args.full, args.clock)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
