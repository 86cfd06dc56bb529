"""Data-parallel scaling: a patching sweep and EAP-IG over 1,024 prompts on a Llama-3.2-1B-shaped model, 1 to 8 GPUs.

Random weights with the shape of Llama-3.2-1B (``real_scale_gpu.build``: 16 layers, d_model 2048,
32 heads, 8 key/value heads, d_mlp 8192, vocab 128256). Every rank builds the same model
(seeded), the same 1,024 random prompt pairs (20 tokens; the corrupted prompt differs at one
position; logit-difference metric) and runs, inside ``mechinterp.distributed(batch_size=B)``:

* ``patch``: activation patching, ``resid_pre`` by layer x position (320 patches per prompt);
* ``eap-ig``: ``circuits.discover(method="eap-ig-inputs", steps=5)`` on the edge graph.

Each rank sweeps its block of prompts in calls of ``B`` (64) prompts, so one GPU runs the same
code as eight. The time of a sweep is from a barrier before to a barrier after (the slowest
rank), after a warm-up sweep on a few prompts. Rank 0 prints one ``RESULT {json}`` line per
workload with the time, prompts per second and peak memory per card, and saves the result so
that the launcher can check that every process count gives the same numbers.

``--launch 1,2,4,8`` runs ``torchrun --standalone --nproc-per-node k`` for each ``k`` and prints
the table: time per sweep, speedup over one process and efficiency (speedup / k).
``--n-devices 2 --shape llama-8b`` instead splits one 8B-shaped model over 2 GPUs
(``mechinterp.core.devices.split_over_devices``) and reports memory per card.

Usage::

    python benchmarks/distributed_scaling.py --launch 1,2,4,8 --json scaling.json     # NCCL, one GPU per process
    python benchmarks/distributed_scaling.py --tiny --launch 1,2                       # CPU, gloo, small shape
    torchrun --standalone --nproc-per-node 1 benchmarks/distributed_scaling.py --shape llama-8b --n-devices 2 \\
        --n-prompts 64 --dtype bfloat16                                                 # 8B across 2 GPUs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_scale_gpu import LLAMA_1B, TINY, build  # noqa: E402

LLAMA_8B = dict(n_layers=32, d_model=4096, n_heads=32, n_key_value_heads=8, d_head=128, d_mlp=14336, d_vocab=128256)
SHAPES = {"llama-1b": LLAMA_1B, "llama-8b": LLAMA_8B, "tiny": TINY}
WORKLOADS = ("patch", "eap-ig")


def make_task(cfg, n: int, n_pos: int, seed: int = 0):
    """``n`` random prompt pairs (the corrupted prompt differs at position ``n_pos // 3``), logit-difference metric."""
    from mechinterp.tasks import Task

    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(100, cfg.d_vocab, (n, n_pos), generator=gen)
    corrupted = clean.clone()
    corrupted[:, n_pos // 3] = torch.randint(100, cfg.d_vocab, (n,), generator=gen)
    correct, wrong = torch.randint(0, cfg.d_vocab, (2, n), generator=gen)
    empty = [""] * n
    return Task(name="random-pairs", clean_prompts=empty, corrupted_prompts=empty, clean_tokens=clean,
                corrupted_tokens=corrupted, lengths=torch.full((n,), n_pos), correct_answers=empty, wrong_answers=empty,
                correct_tokens=correct, wrong_tokens=wrong)


def run_workload(name: str, model, task, steps: int):
    from mechinterp.circuits import discover
    from mechinterp.patching import activation_patch

    if name == "patch":
        return activation_patch(model, task, site="resid_pre", by="position", normalise=False).raw
    return discover(model, task, "eap-ig-inputs", "corrupted", steps=steps).scores


def sync() -> None:
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            torch.cuda.synchronize(i)


def worker(args: argparse.Namespace) -> None:
    """One rank (run under torchrun): build, warm up, time each workload, report from rank 0."""
    import mechinterp
    from mechinterp.core.devices import split_over_devices
    from mechinterp.core.distributed import gather_objects

    dtype = getattr(torch, args.dtype)
    with mechinterp.distributed(batch_size=args.batch) as ctx:
        if ctx.device.type == "cpu":
            torch.set_num_threads(args.cpu_threads)
        shape = TINY if args.tiny else SHAPES[args.shape]
        if args.n_devices > 1:  # model parallel: this rank's model over n_devices GPUs from local_rank * n_devices
            model = build(shape, "cpu", dtype)
            split_over_devices(model, args.n_devices, f"cuda:{ctx.local_rank * args.n_devices}")
        else:
            model = build(shape, str(ctx.device), dtype)
        task = make_task(model.cfg, args.n_prompts, args.n_pos, seed=0)
        warm = task.subset(list(range(min(len(task), 2 * ctx.world_size))))
        name = torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu"
        for workload in args.workloads:
            with mechinterp.distributed(batch_size=min(args.batch, 2)):
                run_workload(workload, model, warm, args.steps)
            if torch.cuda.is_available():
                for i in range(torch.cuda.device_count()):
                    torch.cuda.reset_peak_memory_stats(i)
            sync()
            ctx.barrier()
            start = time.perf_counter()
            out = run_workload(workload, model, task, args.steps)
            sync()
            ctx.barrier()
            seconds = time.perf_counter() - start
            peaks = [round(torch.cuda.max_memory_allocated(i) / 2**30, 2) for i in range(torch.cuda.device_count())
                     if torch.cuda.max_memory_allocated(i) > 0] if torch.cuda.is_available() else []
            peaks = [p for block in gather_objects(peaks, ctx) for p in block]
            if ctx.is_main:
                if args.out:
                    torch.save(out.float().cpu(), Path(args.out) / f"{workload}-w{ctx.world_size}.pt")
                row = {"workload": workload, "processes": ctx.world_size, "n_devices_per_model": args.n_devices,
                       "n_prompts": len(task), "batch": args.batch, "seconds": round(seconds, 3),
                       "prompts_per_s": round(len(task) / seconds, 2), "peak_gib_per_card": peaks,
                       "device": name, "backend": ctx.backend, "dtype": args.dtype,
                       "shape": "tiny" if args.tiny else args.shape}
                print("RESULT " + json.dumps(row), flush=True)


def launch(args: argparse.Namespace, counts: list[int]) -> list[dict]:
    """Run torchrun for each process count; return the rows with speedup, efficiency and the difference from 1 process."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    out = Path(args.out or tempfile.mkdtemp(prefix="mechinterp-scaling-"))
    out.mkdir(parents=True, exist_ok=True)
    passthrough = [a for a in sys.argv[1:] if not a.startswith("--launch")]
    if "--launch" in sys.argv:
        i = sys.argv.index("--launch")
        passthrough = sys.argv[1:i] + sys.argv[i + 2:]
    rows = []
    for k in counts:
        if gpus and k * args.n_devices > gpus:
            print(f"skip {k} processes: {k * args.n_devices} GPUs needed, {gpus} here", file=sys.stderr)
            continue
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={k}", __file__,
               *passthrough, "--out", str(out)]
        print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        found = [json.loads(line[len("RESULT "):]) for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not found:
            print(done.stdout[-3000:] + done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"torchrun with {k} processes failed (exit {done.returncode})")
        rows += found
    base = {r["workload"]: r for r in rows if r["processes"] == min(r2["processes"] for r2 in rows)}
    for r in rows:
        b = base[r["workload"]]
        r["speedup"] = round(b["seconds"] / r["seconds"] * b["processes"], 2)
        r["efficiency"] = round(r["speedup"] / r["processes"], 2)
        ref = torch.load(out / f"{r['workload']}-w{b['processes']}.pt")
        mine = torch.load(out / f"{r['workload']}-w{r['processes']}.pt")
        r["max_abs_diff_vs_base"] = float((mine - ref).abs().max())
        r["max_abs_value"] = float(ref.abs().max())
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| workload | processes | prompts | s per sweep | prompts/s | speedup | efficiency | peak GiB per card | max abs diff vs 1 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['processes']} | {r['n_prompts']} | {r['seconds']} | {r['prompts_per_s']} | "
                     f"{r['speedup']} | {r['efficiency']} | {r['peak_gib_per_card'] or '-'} | {r['max_abs_diff_vs_base']:.2g} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--launch", default=None, help="process counts to run under torchrun, e.g. 1,2,4,8 (omit: be one rank)")
    parser.add_argument("--shape", default="llama-1b", choices=sorted(SHAPES))
    parser.add_argument("--tiny", action="store_true", help="a small shape, 64 prompts, fp32 on the CPU (checks the script)")
    parser.add_argument("--dtype", default=None, help="bfloat16 (default on GPUs) or float32 (default on CPU)")
    parser.add_argument("--n-prompts", type=int, default=None, help="prompts per sweep (default 1024; --tiny: 64)")
    parser.add_argument("--n-pos", type=int, default=20)
    parser.add_argument("--batch", type=int, default=None, help="prompts per call on each rank (default 64; --tiny: 8)")
    parser.add_argument("--steps", type=int, default=5, help="EAP-IG steps")
    parser.add_argument("--n-devices", type=int, default=1, help="GPUs per model (layers split over them)")
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--cpu-threads", type=int, default=1,
                        help="torch threads per rank on the CPU (gloo): k ranks use k x this many cores")
    parser.add_argument("--out", default=None, help="folder for the results the launcher compares")
    parser.add_argument("--json", default=None, help="write the launcher's rows here")
    args = parser.parse_args()
    args.dtype = args.dtype or ("float32" if args.tiny or not torch.cuda.is_available() else "bfloat16")
    args.n_prompts = args.n_prompts or (64 if args.tiny else 1024)
    args.batch = args.batch or (8 if args.tiny else 64)
    if args.launch is None:
        worker(args)
        return
    rows = launch(args, [int(k) for k in args.launch.split(",")])
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
