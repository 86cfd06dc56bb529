"""Influence under a memory budget: a training set whose gradients are 10x the budget.

Fits an exact-gradient (no projection) EK-FAC index of the planted-fact model on a training set
of ``--n`` sequences twice, once with no budget (gradients in memory) and once with a budget of
a tenth of the gradient matrix (streamed to disk), and records the growth of the process's
anonymous resident memory (``RssAnon``, sampled every 5 ms; file-backed pages of the memory map
are page cache the kernel can drop) during ``fit`` and during ``score``.

Run: ``python benchmarks/influence_memory.py --out benchmarks/results/influence_memory.json``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import torch

from mechinterp.influence import InfluenceIndex
from mechinterp.influence.planted import make_data, make_model, train


def _anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


class Peak:
    def __enter__(self):
        self.base, self.peak, self._run = _anon(), _anon(), True
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()
        return self

    def _loop(self):
        while self._run:
            self.peak = max(self.peak, _anon())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._run = False
        self._t.join()
        self.growth = self.peak - self.base


def run(copies: int, budget_fraction: float | None, batch_size: int = 32) -> dict:
    data = make_data(copies=copies)
    model = make_model(data.d_vocab)
    train(model, data.tokens[:376], steps=30)
    queries = [(torch.tensor(p), t) for p, t in data.queries]
    probe = InfluenceIndex(model, "ekfac", projection_dim=None)
    own = dict(model.named_parameters())
    nbytes = len(data.tokens) * sum(own[n].numel() for n in probe.names) * 4
    budget = None if budget_fraction is None else nbytes * budget_fraction
    with tempfile.TemporaryDirectory() as tmp:
        index = InfluenceIndex(model, "ekfac", projection_dim=None, memory_budget=budget, cache_dir=tmp, batch_size=batch_size)
        t0 = time.perf_counter()
        with Peak() as fit:
            index.fit(data.tokens)
        t1 = time.perf_counter()
        with Peak() as score:
            result = index.score(queries, per_token=False)
        t2 = time.perf_counter()
        return {
            "n_train": len(data.tokens), "gradient_matrix_MB": round(nbytes / 1e6, 1),
            "budget_MB": None if budget is None else round(budget / 1e6, 1), "on_disk": index.store_.on_disk,
            "fit_s": round(t1 - t0, 2), "score_s": round(t2 - t1, 2),
            "fit_peak_anon_growth_MB": round(fit.growth / 1e6, 1), "score_peak_anon_growth_MB": round(score.growth / 1e6, 1),
            "top1": [data.tokens[result.top(q, 1)[0]].tolist() for q in range(len(queries))],  # sequences: duplicates tie
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=40, help="rows per ordinary fact (5 gives 376 sequences)")
    parser.add_argument("--only", choices=["in_memory", "budget_tenth"], default=None,
                        help="run one configuration (in a fresh process, so the other's freed memory is not reused)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    fractions = {"in_memory": None, "budget_tenth": 0.1}
    rows = {k: run(args.copies, f) for k, f in fractions.items() if args.only in (None, k)}
    if len(rows) == 2:
        rows["same_top1"] = rows["in_memory"]["top1"] == rows["budget_tenth"]["top1"]
    print(json.dumps(rows, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
