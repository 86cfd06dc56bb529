"""Planted facts and the linear datamodeling score (LDS), by retraining on random halves.

1. Train the planted-fact model (``mechinterp.influence.planted``; 376 sequences, 8 made-up
   facts planted in 2 rows each) and score the training set for each fact's query by every
   method; record the ranks of the planted rows (the known answer).
2. Retrain the same initial weights on ``--subsets`` random 50% subsets and measure each
   query's log-probability. LDS (Park et al. 2023) = Spearman correlation, over subsets,
   between the sum of a method's scores over the subset and the measured log-probability,
   averaged over queries.

Run: ``python experiments/influence/planted_lds.py --subsets 40 --out benchmarks/results/influence_lds.json``
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from mechinterp.influence import InfluenceIndex, tracin
from mechinterp.influence.planted import make_data, make_model, query_logprobs, train


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    rx, ry = x.argsort().argsort().double(), y.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([rx, ry]))[0, 1])


def main(subsets: int = 40, steps: int = 60, seed: int = 0, projection_dim: int | None = None) -> dict:
    start = time.perf_counter()
    data = make_data(seed=seed)
    model = make_model(data.d_vocab, seed=seed)
    ckpts = train(model, data.tokens, steps=steps, keep=3)
    queries = [(torch.tensor(p), t) for p, t in data.queries]
    cut = math.ceil(0.01 * len(data.tokens))
    scores, planted = {}, {}
    for method in ("ekfac", "kfac", "dot", "cosine"):
        r = InfluenceIndex(model, method, projection_dim=projection_dim, batch_size=64).fit(data.tokens).score(queries, per_token=False)
        scores[method] = r.scores
    print(f"scored ({time.perf_counter() - start:.0f} s)", flush=True)
    scores["tracin"] = tracin(model, ckpts, data.tokens, queries, projection_dim=projection_dim, batch_size=64, per_token=False).scores
    for method, s in scores.items():
        ranks = [[int((s[q] > s[q, r]).sum()) for r in rows] for q, rows in data.planted.items()]
        planted[method] = {"ranks": ranks, "top1pct_rate": sum(max(r) < cut for r in ranks) / len(ranks)}
    gen = torch.Generator().manual_seed(seed + 1)
    masks, outcomes = [], []
    for _ in range(subsets):
        mask = torch.rand(len(data.tokens), generator=gen) < 0.5
        sub = make_model(data.d_vocab, seed=seed)
        train(sub, data.tokens[mask], steps=steps)
        masks.append(mask)
        outcomes.append(query_logprobs(sub, data))
        print(f"subset {len(outcomes)}/{subsets} retrained ({time.perf_counter() - start:.0f} s)", flush=True)
    masks_t, out_t = torch.stack(masks).double(), torch.stack(outcomes).double()  # [subsets, n], [subsets, q]
    lds = {}
    for method, s in scores.items():
        predicted = masks_t @ s.double().T  # [subsets, q]
        per_q = [spearman(predicted[:, q], out_t[:, q]) for q in range(out_t.shape[1])]
        lds[method] = {"mean": sum(per_q) / len(per_q), "per_query": per_q}
    return {
        "n_train": len(data.tokens), "n_queries": len(queries), "steps": steps, "subsets": subsets, "seed": seed,
        "projection_dim": projection_dim, "top1pct_cut": cut, "planted": planted, "lds": lds,
        "full_model_logprobs": query_logprobs(model, data).tolist(),
        "wall_s": round(time.perf_counter() - start, 1), "where": platform.processor() or "cpu",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subsets", type=int, default=40)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--projection-dim", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the shared 2-core machine: 2 threads thrashed
    result = main(args.subsets, args.steps, args.seed, args.projection_dim)
    text = json.dumps(result, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k not in ("planted",)} | {"planted_rates": {m: v["top1pct_rate"] for m, v in result["planted"].items()}, "lds": {m: round(v["mean"], 3) for m, v in result["lds"].items()}}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
