"""SAE training throughput and quality: mechinterp.dictionary vs sae-lens, same activations, same hyper-parameters.

Both libraries train on one activation tensor (the same rows, on the same device), scaled once here to unit mean
squared norm (so each library's own normalisation is off and an L1 coefficient means the same objective in both:
``Σ‖x - x̂‖² + λ Σ_i f_i ‖W_dec,i‖``), with the same d_sae, k or λ, batch size, steps, Adam learning rate and a
linear decay over the last 20% of the steps. Each library keeps its own defaults for the rest (listed in the
results file). Throughput is tokens / wall-clock seconds of the whole training call (initialisation included);
quality is measured the same way for both on held-out rows: explained variance ``1 - Σ‖x - x̂‖² / Σ‖x - x̄‖²`` and
L0 (mean active latents per token).

Needs sae-lens (not a dependency): ``pip install --no-deps --target /tmp/peer-saelens sae-lens==6.54.12
babe config2py defusedxml docstring_parser dol graze i2 importlib_resources nltk plotly plotly-express py2store
python-dotenv simple-parsing tenacity`` and ``PYTHONPATH=$PWD:/tmp/peer-saelens``.

Run:
    python benchmarks/sae_training.py                                   # CPU: toy-lm resid_post, small
    python benchmarks/sae_training.py --device cuda --source synthetic --d-in 768 --n-tokens 2000000 \
        --d-sae 16384 --batch-size 4096 --k 32                          # H100
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import torch


def toy_lm_activations(n_per_task: int, layer: int) -> torch.Tensor:
    import mechinterp

    model = mechinterp.load("zoo:toy-lm")
    rows = []
    for name in ("ioi", "facts", "sentiment", "greater-than"):
        task = mechinterp.tasks.load(name, model, n=n_per_task, split="train")
        cache = mechinterp.SharedCache(model, task.clean_tokens, progress=False)
        acts = cache.get(f"blocks.{layer}.hook_resid_post")
        mask = torch.arange(acts.shape[1])[None] < task.lengths[:, None]
        rows.append(torch.as_tensor(acts)[mask])
    return torch.cat(rows).float()


def synthetic_activations(n: int, d: int, n_features: int, p: float, seed: int = 0) -> torch.Tensor:
    """x = sparse non-negative codes @ random unit directions + noise, built in chunks (bounded memory)."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(n_features, d, generator=g)
    directions /= directions.norm(dim=-1, keepdim=True)
    out = torch.empty(n, d)
    for start in range(0, n, 16384):
        m = min(16384, n - start)
        codes = (torch.rand(m, n_features, generator=g) < p) * (0.5 + torch.rand(m, n_features, generator=g))
        out[start:start + m] = codes @ directions + 0.01 * torch.randn(m, d, generator=g) / d**0.5
    return out


def quality(encode, decode, x: torch.Tensor, batch: int = 8192) -> tuple[float, float]:
    sq, l0 = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(x), batch):
            xb = x[start:start + batch]
            f = encode(xb)
            sq += float((decode(f) - xb).pow(2).sum())
            l0 += float((f != 0).sum())
    return 1 - sq / float((x - x.mean(0)).pow(2).sum()), l0 / len(x)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_ours(x: torch.Tensor, args: argparse.Namespace, arch: str) -> tuple[object, float]:
    from mechinterp.dictionary import train_sae

    sync(args.device)
    start = time.perf_counter()
    sae = train_sae(x, architecture=arch, d_sae=args.d_sae, k=args.k, l1_coefficient=args.l1, lr=args.lr,
                    batch_size=args.batch_size, n_epochs=args.epochs, normalize_activations=False,
                    buffer_size=max(args.batch_size * 16, 2**16), device=args.device, l1_warmup_fraction=0.0)
    sync(args.device)
    return sae, time.perf_counter() - start


def train_theirs(x: torch.Tensor, args: argparse.Namespace, arch: str) -> tuple[object, float]:
    import sae_lens
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    d_in = x.shape[1]
    if arch == "topk":
        cfg = sae_lens.TopKTrainingSAEConfig(d_in=d_in, d_sae=args.d_sae, k=args.k, device=args.device,
                                             normalize_activations="none")
        sae = sae_lens.TopKTrainingSAE(cfg)
    else:
        cfg = sae_lens.StandardTrainingSAEConfig(d_in=d_in, d_sae=args.d_sae, l1_coefficient=args.l1, device=args.device,
                                                 normalize_activations="none")
        sae = sae_lens.StandardTrainingSAE(cfg)
    n_steps = args.epochs * math.ceil(len(x) / args.batch_size)

    def provider():
        g = torch.Generator().manual_seed(0)
        while True:
            order = torch.randperm(len(x), generator=g).to(x.device)
            for start in range(0, len(x), args.batch_size):
                yield x[order[start:start + args.batch_size]]

    trainer_cfg = SAETrainerConfig(total_training_samples=n_steps * args.batch_size, train_batch_size_samples=args.batch_size,
                                   lr=args.lr, lr_end=0.0, lr_scheduler_name="constant", lr_decay_steps=int(0.2 * n_steps),
                                   device=args.device, dead_feature_window=max(1, 2000 // max(1, args.batch_size // 256)))
    sync(args.device)
    start = time.perf_counter()
    trainer = SAETrainer(trainer_cfg, sae, provider())
    sae = trainer.fit()
    sync(args.device)
    return sae, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--source", default="toy-lm", choices=["toy-lm", "synthetic"])
    parser.add_argument("--n-per-task", type=int, default=192, help="toy-lm: train prompts per task")
    parser.add_argument("--layer", type=int, default=2)
    parser.add_argument("--d-in", type=int, default=768, help="synthetic: width")
    parser.add_argument("--n-tokens", type=int, default=200_000, help="synthetic: rows")
    parser.add_argument("--d-sae", type=int, default=1024)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--l1", type=float, default=5.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--architectures", default="topk,standard")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.source == "toy-lm":
        x = toy_lm_activations(args.n_per_task, args.layer)
    else:
        x = synthetic_activations(args.n_tokens, args.d_in, n_features=4 * args.d_in, p=8 / (4 * args.d_in))
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(1))]
    x = x * x.pow(2).sum(-1).mean().rsqrt()  # unit mean squared norm, once, for both
    held = max(256, len(x) // 10)
    test, train = x[:held].to(args.device), x[held:].to(args.device)
    import sae_lens

    rows = []
    for arch in args.architectures.split(","):
        for name, fn in (("mechinterp", train_ours), ("sae-lens", train_theirs)):
            sae, seconds = fn(train, args, arch)
            ev, l0 = quality(sae.encode, sae.decode, test)
            rows.append({"library": name, "architecture": arch, "seconds": seconds,
                         "tokens_per_s": args.epochs * len(train) / seconds, "explained_variance": ev, "l0": l0})
            print(json.dumps(rows[-1]), flush=True)
    env = {"torch": torch.__version__, "sae_lens": getattr(sae_lens, "__version__", "?"), "device": args.device,
           "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
           "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "train_tokens": len(train), "held_out_tokens": len(test), **vars(args), "d_in": x.shape[1]}
    print("\n| architecture | library | tokens/s | explained variance (held out) | L0 | ratio ours/sae-lens (tokens/s) |")
    print("|---|---|---|---|---|---|")
    for arch in args.architectures.split(","):
        ours, theirs = (next(r for r in rows if r["library"] == lib and r["architecture"] == arch) for lib in ("mechinterp", "sae-lens"))
        for r in (ours, theirs):
            ratio = f"{ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x" if r is ours else ""
            print(f"| {arch} | {r['library']} | {r['tokens_per_s']:,.0f} | {r['explained_variance']:.4f} | {r['l0']:.2f} | {ratio} |")
    print(json.dumps(env))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"env": env, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
