"""Train the zoo's toy model of superposition (:mod:`mechinterp.zoo.tms`).

Elhage et al. (2022)'s setting with equal importances: 64 features, 16 hidden dimensions,
each feature non-zero with probability 0.03 (about 2 at a time), uniform magnitudes in
[0, 1]; Adam (lr 1e-3, batch 1024) on ``‖x - ReLU(WᵀWx + b)‖²``. At this sparsity the model
stores nearly every feature in superposition. Writes ``config.json``, ``model.safetensors``
and ``card.md`` (with the measured reconstruction loss and how many features are
represented). A few minutes on one CPU core (163 s on the shared development VM)::

    python -m mechinterp.zoo.train.tms                 # writes mechinterp/zoo/superposition
    python -m mechinterp.zoo.train.tms --out /tmp/tms --steps 500
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mechinterp.zoo.tms import TMS_DIR, ToyModelOfSuperposition


def train(n_features: int = 64, d_hidden: int = 16, p: float = 0.03, steps: int = 10_000, batch: int = 1024,
          lr: float = 1e-3, seed: int = 0) -> tuple[ToyModelOfSuperposition, dict]:
    torch.manual_seed(seed)
    model = ToyModelOfSuperposition(n_features, d_hidden, p)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed + 1)
    start = time.perf_counter()
    for _ in range(steps):
        x = (torch.rand(batch, n_features, generator=g) < p) * torch.rand(batch, n_features, generator=g)
        loss = (x - model(x)).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, _ = model.sample(50_000, seed=seed + 2)
    with torch.no_grad():
        test_loss = float((x - model(x)).pow(2).sum(-1).mean())
        baseline = float(x.pow(2).sum(-1).mean())  # predicting zeros
    dirs = model.feature_directions()
    overlap = (dirs @ dirs.T - torch.eye(len(dirs))).abs().max()
    stats = {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "seconds": round(time.perf_counter() - start, 1),
             "test_loss": test_loss, "zero_prediction_loss": baseline, "represented": int(model.represented().sum()),
             "max_interference": float(overlap)}
    return model.requires_grad_(False), stats


def card(model: ToyModelOfSuperposition, stats: dict) -> str:
    return f"""# Toy model of superposition

Elhage et al. (2022)'s toy model, trained by `mechinterp/zoo/train/tms.py`: {model.n_features} sparse features
(each non-zero with probability {model.feature_probability}, uniform magnitude in [0, 1], equal importance) stored in
{model.d_hidden} hidden dimensions, `h = W x`, `x' = ReLU(Wᵀ h + b)`, trained on `‖x − x'‖²`.

**Ground truth:** feature `i` lives along `W[:, i]` in the hidden space. {stats['represented']} of the
{model.n_features} features are represented (column norm ≥ 0.5), {stats['represented'] / model.d_hidden:.1f} per hidden
dimension; the largest |cosine| between two of their directions is {stats['max_interference']:.2f} (superposition: they
cannot be orthogonal).

Training: {stats['steps']} Adam steps (lr {stats['lr']}, batch {stats['batch']}, seed {stats['seed']}),
{stats['seconds']} s on CPU. Held-out reconstruction loss {stats['test_loss']:.4f} per sample, against
{stats['zero_prediction_loss']:.4f} for predicting zeros.

Use: `mechinterp.zoo.tms.load_tms()`; `tms.sample(n)` gives features and hidden activations,
`tms.feature_directions()` the unit directions an SAE trained on the hidden activations must recover
(`tests/dictionary/test_tms.py`).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(TMS_DIR))
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from safetensors.torch import save_file

    from mechinterp.core.atomic import atomic_path, write_text

    model, stats = train(steps=args.steps, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    write_text(out / "config.json", json.dumps({"n_features": model.n_features, "d_hidden": model.d_hidden,
                                                "feature_probability": model.feature_probability, **stats}, indent=2))
    write_text(out / "card.md", card(model, stats))
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
