"""Train ``zoo:attn-only-2l``: a 2-layer attention-only transformer with induction heads.

The data are sequences of random words with **repeated segments of random length at
random offsets**. With a fixed period ("random half, then the same half again") a model can
predict the second half from a fixed positional offset and never forms induction heads
(DESIGN.md, "Pitfalls"); random lengths and offsets leave induction as the only general
solution: a previous-token head in layer 0 and induction heads in layer 1 that
K-compose with it. Training has two phases: segment copies inside a random background
(:func:`sample_segments`; induction heads form, but chance matches make the model hedge),
then distinct words with a periodic continuation (:func:`sample_periodic`; the model learns
to copy with confidence).

After training, the script measures per-head previous-token and induction scores on
``[BOS] + A + A`` sequences, names the heads scoring above :data:`HEAD_THRESHOLD`, checks
by zero-ablation that they carry the behaviour, and writes the model with its card and
``circuit.json`` in the zoo format.

Run it (about 3.5 minutes of CPU time on one core)::

    python -m mechinterp.zoo.train.attn_only_2l            # writes mechinterp/zoo/models/attn-only-2l
    python -m mechinterp.zoo.train.attn_only_2l --steps 10 --out /tmp/a2l
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from mechinterp.core.zoo_format import ZOO_DIR, save_model
from mechinterp.zoo import diagnostics as dg
from mechinterp.core import atomic
from mechinterp.core.rng import keep_global_rng
from mechinterp.zoo.tokenizer import word_tokenizer

__all__ = ["NAME", "WORDS", "HEAD_THRESHOLD", "make_model", "sample_segments", "sample_periodic", "main"]

NAME = "attn-only-2l"
WORDS = [f"t{i}" for i in range(60)]
BOS = 1
N_SPECIAL = 3  # <pad> <bos> <unk>
HEAD_THRESHOLD = 0.4
EVAL_SEG_LEN = 20

ARCH = dict(
    n_layers=2,
    n_heads=4,
    d_model=64,
    d_head=16,
    n_ctx=64,
    attn_only=True,
    normalization_type="LN",
    positional_embedding_type="standard",
    act_fn=None,
)
RECIPE = dict(
    batch=32, lr=3e-3, final_lr_frac=0.05, weight_decay=0.01, warmup=100,
    phase1_frac=0.6, min_seg=2, max_seg=30, max_repeats=4,  # phase 1: segment copies
    min_period=2, min_copied=4,  # phase 2: periodic continuation
)


def make_model(seed: int = 0, tokenizer_dir: str | Path | None = None) -> Any:
    """A freshly initialised (seeded) model with the zoo word tokenizer."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tok = word_tokenizer(WORDS, tokenizer_dir)
    cfg = HookedTransformerConfig(
        **ARCH, d_vocab=len(WORDS) + N_SPECIAL, seed=seed, model_name=NAME, tokenizer_name=None, device="cpu"
    )
    torch.manual_seed(seed)
    return HookedTransformer(cfg, tokenizer=tok)


def sample_segments(rng: random.Random, batch: int, n_ctx: int) -> Int[Tensor, "batch pos"]:
    """Phase 1 data: random words with 1..``max_repeats`` copies of earlier random segments.

    Each copy takes a segment of random length from a random source offset and writes it
    at a random later offset, so the distance between the occurrences varies. Induction
    heads form on these, but chance repeats of single words in the random background make
    a match an unreliable signal, so the model learns to hedge (~0.4 nats on repeats).
    """
    low, high = N_SPECIAL, N_SPECIAL + len(WORDS) - 1
    rows = []
    for _ in range(batch):
        seq = [BOS] + [rng.randint(low, high) for _ in range(n_ctx - 1)]
        for _ in range(rng.randint(1, RECIPE["max_repeats"])):
            seg = rng.randint(RECIPE["min_seg"], min(RECIPE["max_seg"], (n_ctx - 1) // 2))
            src = rng.randint(1, n_ctx - 2 * seg)
            dst = rng.randint(src + seg, n_ctx - seg)
            seq[dst : dst + seg] = seq[src : src + seg]
        rows.append(seq)
    return torch.tensor(rows)


def sample_periodic(rng: random.Random, batch: int, n_ctx: int) -> Int[Tensor, "batch pos"]:
    """Phase 2 data: distinct random words, then a repeat of random period from a random offset.

    Per sequence: a random repeat start ``r`` and period ``D`` (``2 <= D < r``); positions
    ``1 .. r - 1`` hold distinct random words and every later position copies the word ``D``
    positions back. Since ``r`` and ``D`` vary, no fixed positional offset predicts the copy.
    With no chance matches, "this word occurred before" is reliable and the model learns to
    copy with confidence. (Trained on this alone from scratch, the model first finds an
    "avoid words already seen" solution and no induction heads; hence phase 1.)
    """
    words = range(N_SPECIAL, N_SPECIAL + len(WORDS))
    rows = []
    for _ in range(batch):
        start = rng.randint(RECIPE["min_period"] + 1, min(len(WORDS), n_ctx - RECIPE["min_copied"]))
        period = rng.randint(RECIPE["min_period"], start - 1)
        seq = [BOS, *rng.sample(words, start - 1)]
        for pos in range(start, n_ctx):
            seq.append(seq[pos - period])
        rows.append(seq)
    return torch.tensor(rows)


def _lr_factor(step: int, steps: int) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_frac`` of the peak."""
    warm = RECIPE["warmup"]
    if step < warm:
        return (step + 1) / warm
    frac = RECIPE["final_lr_frac"]
    progress = (step - warm) / max(steps - warm, 1)
    return frac + (1 - frac) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _train(model: Any, steps: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps))
    model.train()
    recent: list[float] = []
    phase1 = int(RECIPE["phase1_frac"] * steps)
    for step in range(steps):
        sample = sample_segments if step < phase1 else sample_periodic
        tokens = sample(rng, RECIPE["batch"], model.cfg.n_ctx)
        loss = model(tokens, return_type="loss")
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        recent = (recent + [loss.item()])[-100:]
    model.eval()
    return {"train_loss_last100": sum(recent) / max(len(recent), 1)}


def evaluate(model: Any, seed: int = 1000, batch: int = 256) -> dict[str, Any]:
    """Head scores, named heads, repeated-half losses and zero-ablation deltas."""
    tokens = dg.repeated_tokens(model, batch=batch, seg_len=EVAL_SEG_LEN, seed=seed)
    prev = dg.previous_token_scores(model, tokens)
    ind = dg.induction_scores(model, tokens, EVAL_SEG_LEN)
    prev_heads = _named(prev[0], 0)
    ind_heads = _named(ind[1], 1)
    base = dg.repeated_loss(model, tokens, EVAL_SEG_LEN)
    all_heads = [f"L{l}H{h}" for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    named = prev_heads + ind_heads
    others = [h for h in all_heads if h not in named]
    single = {h: dg.repeated_loss(model, tokens, EVAL_SEG_LEN, ablate=[h]) - base for h in all_heads}
    return {
        "repeated_loss": base,
        "previous_token_scores": prev.tolist(),
        "induction_scores": ind.tolist(),
        "heads": {"previous_token": prev_heads, "induction": ind_heads},
        "ablation_delta": {
            "single": single,
            "previous_token": dg.repeated_loss(model, tokens, EVAL_SEG_LEN, ablate=prev_heads) - base,
            "induction": dg.repeated_loss(model, tokens, EVAL_SEG_LEN, ablate=ind_heads) - base,
            "named": dg.repeated_loss(model, tokens, EVAL_SEG_LEN, ablate=named) - base,
            "others": dg.repeated_loss(model, tokens, EVAL_SEG_LEN, ablate=others) - base if others else 0.0,
        },
    }


def _named(scores: Tensor, layer: int) -> list[str]:
    """Heads of ``layer`` scoring above the threshold (at least the best one)."""
    picked = [h for h in range(len(scores)) if scores[h] > HEAD_THRESHOLD] or [int(scores.argmax())]
    return [f"L{layer}H{h}" for h in picked]


SOURCE = "training + verified by head scores and ablation; edges checked by exact edge patching (card.md)"
NOTE = (
    "edges: the circuit relative to token-level ablation (the induction task's random-token corruption, "
    "or its mean). positional_edges: embed -> previous-token heads' queries and keys carry position only "
    "(those heads attend by position); they are identical in clean and corrupted runs, so no token-level "
    "ablation can test them; exact patching measures them at |effect| < 0.1 of a 10-nat logit difference "
    "and knocking them out of the circuit costs < 1% faithfulness (card.md, 'Circuit'). "
    "Add them back for zero ablation."
)


def circuit(heads: dict[str, list[str]]) -> dict[str, Any]:
    """The induction circuit as nodes and (sender, receiver[.q/.k/.v]) edges.

    ``edges`` is the circuit relative to token-level ablation. The previous-token heads'
    query and key inputs from ``embed`` carry position only (those heads attend by
    position), which is identical in clean and corrupted runs, so they are listed apart
    as ``positional_edges`` (exact edge patching measures them at < 1% of the effect; the
    card's "Circuit" section has the evidence).
    """
    prev, ind = heads["previous_token"], heads["induction"]
    edges = [["embed", f"{p}.v"] for p in prev]
    for i in ind:
        edges += [["embed", f"{i}.q"], ["embed", f"{i}.v"]] + [[p, f"{i}.k"] for p in prev] + [[i, "logits"]]
    return {
        "nodes": ["embed", *prev, *ind, "logits"],
        "edges": edges,
        "heads": {"previous_token": prev, "induction": ind},
        "source": SOURCE,
        "positional_edges": [["embed", f"{p}.{x}"] for p in prev for x in "qk"],
        "note": NOTE,
    }


@keep_global_rng()  # training seeds torch globally (TransformerLens init); the caller's state comes back
def main(steps: int = 3500, out: str | Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Train, evaluate and save the model; return the metrics.

    Args:
        steps: optimiser steps (batch of 32 sequences of 64 tokens each).
        out: destination folder; the shipped zoo folder if omitted.
        seed: seeds weights and data (training is deterministic on CPU).

    Returns:
        The metrics written into the card (losses, head scores, ablation deltas, wall time).
    """
    torch.set_num_threads(1)
    out = Path(out) if out is not None else ZOO_DIR / NAME
    start, cpu_start = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="mechinterp-tok-") as tok_dir:
        model = make_model(seed, tok_dir)
        metrics: dict[str, Any] = {"steps": steps, "seed": seed, **_train(model, steps, seed)}
        metrics["train_wall_s"] = round(time.perf_counter() - start, 1)
        metrics["train_cpu_s"] = round(time.process_time() - cpu_start, 1)
        metrics["n_params"] = sum(p.numel() for p in model.parameters())
        metrics.update(evaluate(model))
        save_model(model, out, card=_card(model, metrics), extra={"circuit.json": circuit(metrics["heads"])})
    atomic.write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def _card(model: Any, m: dict[str, Any]) -> str:
    """The model card (markdown) from the metrics."""
    heads = m["heads"]
    abl = m["ablation_delta"]
    rows = "\n".join(
        f"| L{l}H{h} | {m['previous_token_scores'][l][h]:.3f} | {m['induction_scores'][l][h]:.3f} "
        f"| {abl['single'][f'L{l}H{h}']:+.3f} |"
        for l in range(model.cfg.n_layers)
        for h in range(model.cfg.n_heads)
    )
    arch = ", ".join(f"{k}={v}" for k, v in ARCH.items())
    recipe = ", ".join(f"{k}={v}" for k, v in RECIPE.items())
    return f"""# {NAME}

A 2-layer **attention-only** transformer trained to continue repeated random segments. It
solves the task with a classic induction circuit: previous-token head(s)
**{", ".join(heads["previous_token"])}** in layer 0 and induction head(s)
**{", ".join(heads["induction"])}** in layer 1 (K-composition). Load it with
`mechinterp.load("zoo:{NAME}")`; the circuit is in `circuit.json`.

## Architecture

TransformerLens `HookedTransformerConfig`: {arch}, d_vocab={model.cfg.d_vocab}
({m["n_params"]} parameters). LayerNorm is
folded into the weights at load time (TL's default weight processing), so hook names
`blocks.*.ln1.hook_normalized` remain but the scales live in `W_Q/W_K/W_V`.

Vocabulary: a word-level tokenizer (`mechinterp.zoo.tokenizer.word_tokenizer`):
`<pad>`=0, `<bos>`=1, `<unk>`=2, then the {len(WORDS)} words `{WORDS[0]}` .. `{WORDS[-1]}`.
Text is split on whitespace: `model.to_tokens("t1 t2 t3")` prepends `<bos>`.

## Training

`python -m mechinterp.zoo.train.attn_only_2l --steps {m["steps"]} --seed {m["seed"]}`
(deterministic; one CPU thread). Recipe: {recipe}; AdamW, linear warm-up then cosine
decay to `final_lr_frac` of the peak learning rate, next-token loss on every position.

Data, in two phases (random lengths and offsets throughout: with a fixed period, "half,
then the same half again", a model learns a positional shortcut instead of induction heads):

1. First {RECIPE["phase1_frac"]:.0%} of the steps: `<bos>` + {ARCH["n_ctx"] - 1} uniformly random
   words, into which 1 to {RECIPE["max_repeats"]} segments of random length ({RECIPE["min_seg"]} to
   {RECIPE["max_seg"]} words) are copied from a random earlier offset to a random later one.
   Induction heads form here, but chance repeats of single words in the background make a
   match unreliable, so the model hedges (0.38 nats on repeats after 3000 steps of
   phase-1 data alone).
2. The rest: `<bos>`, distinct random words up to a random position `r`, then every word
   copies the word `D` positions back for a random period `D` (2 <= D < r). A match is now
   always a copy, and the model learns to copy with confidence. (Trained on this alone from
   scratch, it found an "avoid words already seen" solution and no induction heads.)

- Steps: {m["steps"]}; training time: {m["train_wall_s"]} s wall, {m["train_cpu_s"]} s CPU (one
  thread, a 2-core machine shared with other jobs; about {m["train_cpu_s"]} s wall when idle).
- Final training loss (mean of the last 100 steps, phase-2 data, all positions; the
  distinct words before the repeat are unpredictable): {m["train_loss_last100"]:.3f} nats.
- Loss on the predictable part of the repeat (`[BOS] + A + A`, `len(A)` = {EVAL_SEG_LEN}
  distinct random words, positions predicting `A[1:]` in the second copy, 256 fresh
  sequences): **{m["repeated_loss"]:.4f} nats**.

## Heads

Scores on 256 fresh `[BOS] + A + A` sequences (`len(A)` = {EVAL_SEG_LEN}), computed with
`mechinterp.zoo.diagnostics`: previous-token = mean attention from position i to i-1;
induction = mean attention from a token in the second copy to the token after its
occurrence in the first copy. "Ablation" is the change in repeated-part loss (nats) when
that head alone is zero-ablated (`hook_z` set to 0).

| head | previous-token | induction | ablation Δloss |
|---|---|---|---|
{rows}

Joint zero-ablation (Δ loss on the repeated part, nats):

- previous-token head(s) {heads["previous_token"]}: {abl["previous_token"]:+.3f}
- induction head(s) {heads["induction"]}: {abl["induction"]:+.3f}
- all named heads: {abl["named"]:+.3f}
- all other heads: {abl["others"]:+.3f}

Named heads: a head is named when its score is above {HEAD_THRESHOLD} (previous-token in
layer 0, induction in layer 1). {_notes(m)}

## Circuit (`circuit.json`)

`embed` → previous-token heads' **values** (the token to move one position on) →
induction heads' **keys** (K-composition: "the token before this key position was x");
`embed` → induction heads' **queries** (the current token x) and **values** (the token to
copy); induction heads → `logits`. Source: training, verified by head scores and ablation.

`positional_edges` (kept in `circuit.json`, not in `edges`): `embed` → the previous-token
heads' **q, k**. Those heads attend by position, which is identical in clean and corrupted
runs, so no token-level ablation can test these edges. After retraining, check every edge
with exact edge patching: `python benchmarks/circuits_recovery.py` prints the per-edge
evidence and the recovery table; record it here.
"""


def _notes(m: dict[str, Any]) -> str:
    """Caveats read off the ablations: redundant heads, unnamed heads that matter."""
    single, named = m["ablation_delta"]["single"], m["heads"]["previous_token"] + m["heads"]["induction"]
    notes = []
    ind = m["heads"]["induction"]
    if len(ind) > 1 and max(single[h] for h in ind) < 0.5 * m["ablation_delta"]["induction"]:
        notes.append(
            f"The {len(ind)} induction heads are redundant: each alone costs little when ablated, "
            "together they carry the behaviour; ablate them as a group."
        )
    extra = [f"{h} ({single[h]:+.2f})" for h in single if h not in named and single[h] > 0.3]
    if extra:
        notes.append(
            "Unnamed heads whose single ablation still costs over 0.3 nats: "
            f"{', '.join(extra)}; they contribute without being clean "
            "previous-token or induction heads."
        )
    return " ".join(notes)


if __name__ == "__main__":
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--steps", type=int, default=3500)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = main(steps=args.steps, out=args.out, seed=args.seed)
    print(json.dumps({k: v for k, v in result.items() if k != "ablation_delta"}, indent=2))
    print(json.dumps(result["ablation_delta"], indent=2))
