"""Train ``zoo:toy-lm``: a 4-layer word-level language model that solves the language tasks.

The corpus mixes the ``split="train"`` prompts of :mod:`mechinterp.tasks.language` (each
followed by its answer) with random-word sequences that repeat a segment of random length
at a random offset (what makes induction heads form rather than a positional shortcut,
see DESIGN.md). Every sequence starts with ``<bos>`` (id 1) and is right-padded with
``<pad>`` (id 0); padding is masked out of the loss. After training, the script measures
accuracy and the clean-minus-corrupted metric on held-out (``split="test"``) prompts of
every task, runs a per-head activation-patching sweep (corrupted → clean, one head's
``hook_z`` at a time), and writes the model, its card, ``metrics.json`` and
``circuit.json`` in the zoo format.

Run it::

    python -m mechinterp.zoo.train.toy_lm                       # writes mechinterp/zoo/models/toy-lm
    python -m mechinterp.zoo.train.toy_lm --steps 10 --out /tmp/toy --device cuda

``--template-dropout P`` (default 0.15, the shipped model's value) replaces each template word of a
task row by ``<pad>`` with probability ``P`` (see :func:`sample_batch`), so that a prompt with a word
missing is in-distribution and ``<pad>`` means "this word is absent". Input attributions that compare
against an absent input (IG with a pad baseline, Shapley, occlusion) need that to find the ground-truth
word (benchmarks/results/attribution.md). ``--template-dropout 0`` gives the first shipped recipe's
batches exactly. The shipped model: ``--steps 10000 --seed 0 --device cuda`` (see its card).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from mechinterp import tasks
from mechinterp.core.zoo_format import ZOO_DIR, save_model
from mechinterp.tasks import language, vocab
from mechinterp.core import atomic
from mechinterp.core.rng import keep_global_rng
from mechinterp.zoo.tokenizer import SPECIAL_TOKENS, word_tokenizer

__all__ = ["NAME", "ARCH", "RECIPE", "MIX", "make_model", "sample_batch", "evaluate", "patch_heads", "main"]

NAME = "toy-lm"
PAD, BOS = 0, 1
ARCH = dict(
    n_layers=4,
    n_heads=4,
    d_model=128,
    d_head=32,
    d_mlp=512,
    n_ctx=64,
    act_fn="gelu",
    normalization_type="LN",
    positional_embedding_type="standard",
)
RECIPE = dict(batch=160, lr=2e-3, min_lr_frac=0.1, weight_decay=0.01, warmup=300, grad_clip=1.0)
# Sequences per batch of each source (sums to RECIPE["batch"]).
MIX = {"ioi": 40, "facts": 24, "sentiment": 24, "greater-than": 24, "induction": 48}
EVAL_TASKS = (*language.TASKS, "induction")


def make_model(seed: int = 0, tokenizer_dir: str | Path | None = None, device: str = "cpu") -> Any:
    """A freshly initialised (seeded) model with the word tokenizer over :func:`vocab.all_words`."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    words = vocab.all_words()
    tok = word_tokenizer(words, tokenizer_dir)
    cfg = HookedTransformerConfig(
        **ARCH, d_vocab=len(words) + len(SPECIAL_TOKENS), seed=seed, model_name=NAME, tokenizer_name=None, device=device
    )
    torch.manual_seed(seed)
    return HookedTransformer(cfg, tokenizer=tok, move_to_device=True)


def _induction_row(rng: random.Random, n_words: int) -> list[int]:
    """BOS, random words, a segment, a random gap, then the segment again (maybe cut short)."""
    word = lambda: rng.randrange(len(SPECIAL_TOKENS), len(SPECIAL_TOKENS) + n_words)  # noqa: E731
    seg = [word() for _ in range(rng.randint(3, 16))]
    prefix = [word() for _ in range(rng.choice([0, 0, rng.randint(1, 10)]))]
    gap = [word() for _ in range(rng.choice([0, 0, rng.randint(1, 6)]))]
    repeat = seg[: rng.randint(max(2, len(seg) // 2), len(seg))]
    return [BOS, *prefix, *seg, *gap, *repeat]


def _slot_words(ex: language.Example) -> set[int]:
    """Word indices of ``ex`` that template dropout keeps: the ground-truth words and every word
    the corrupted prompt changes (the country; the IOI names; sentiment words; the start year).

    Everything else (template words, punctuation, and the fillers that clean and corrupted share:
    IOI place/object, the greater-than event noun and century, neutral review words) can be dropped.
    """
    return set(ex.key_words) | {i for i, (a, b) in enumerate(zip(ex.clean, ex.corrupted)) if a != b}


def sample_batch(
    step: int, seed: int, ids: dict[str, int], template_dropout: float = 0.0
) -> Int[Tensor, "batch pos"]:
    """The training batch of ``step``: task prompts with answers, and induction rows.

    Deterministic in ``(step, seed)``; rows are right-padded with ``<pad>``. With
    ``template_dropout`` > 0, each prompt word of a task row outside :func:`_slot_words` is
    replaced by ``<pad>`` with that probability (own random stream, seeded by ``(step, seed)``;
    ``<bos>`` and the answer are never dropped). A dropped word is still fed as input; only its
    own prediction is left out of the loss (pad targets are masked). At 0 the batch is the
    default recipe's, unchanged.
    """
    rows: list[list[int]] = []
    drop = random.Random(f"template-dropout/{seed}/{step}") if template_dropout > 0 else None
    for task, count in MIX.items():
        if task == "induction":
            rng = random.Random(f"induction/{seed}/{step}")
            rows += [_induction_row(rng, len(ids)) for _ in range(count)]
            continue
        for ex in language.examples(task, count, seed=seed * 1_000_003 + step, split="train"):
            words = [ids[w] for w in ex.clean]
            if drop is not None:
                keep = _slot_words(ex)
                p = template_dropout
                words = [PAD if i not in keep and drop.random() < p else t for i, t in enumerate(words)]
            rows.append([BOS, *words, ids[ex.answer]])
    width = max(len(r) for r in rows)
    return torch.tensor([r + [PAD] * (width - len(r)) for r in rows])


def _loss(model: Any, tokens: Int[Tensor, "batch pos"]) -> Tensor:
    logits = model(tokens)  # [batch, pos, d_vocab]
    targets = tokens[:, 1:]
    logp = logits[:, :-1].log_softmax(-1).gather(-1, targets[..., None])[..., 0]  # [batch, pos-1]
    mask = (targets != PAD).float()
    return -(logp * mask).sum() / mask.sum()


def _train(
    model: Any, steps: int, seed: int, max_seconds: float | None = None, template_dropout: float = 0.0,
    keep_checkpoints: int = 0, checkpoint_dir: Path | None = None,
) -> dict[str, Any]:
    ids = {w: i + len(SPECIAL_TOKENS) for i, w in enumerate(vocab.all_words())}
    opt = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])

    def lr_at(s: int) -> float:
        if s < RECIPE["warmup"]:
            return (s + 1) / RECIPE["warmup"]
        frac = (s - RECIPE["warmup"]) / max(1, steps - RECIPE["warmup"])
        return RECIPE["min_lr_frac"] + (1 - RECIPE["min_lr_frac"]) * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    curve, recent, start, done = [], [], time.perf_counter(), 0
    marks = checkpoint_steps(steps, keep_checkpoints)
    for step in range(steps):
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            print(f"time budget of {max_seconds} s reached after {step} steps", flush=True)
            break
        tokens = sample_batch(step, seed, ids, template_dropout).to(model.cfg.device)
        loss = _loss(model, tokens)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), RECIPE["grad_clip"])
        lr_used = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        if step + 1 in marks and checkpoint_dir is not None:
            save_checkpoint(model, checkpoint_dir, step + 1, lr_used)
        recent, done = (recent + [loss.item()])[-100:], step + 1
        if (step + 1) % max(1, steps // 20) == 0 or step + 1 == steps:
            curve.append([step + 1, round(sum(recent) / len(recent), 4)])
            print(f"step {step + 1}/{steps} loss {curve[-1][1]}", flush=True)
    model.eval()
    if recent and (not curve or curve[-1][0] != done):
        curve.append([done, round(sum(recent) / len(recent), 4)])
    return {"steps": done, "final_train_loss": curve[-1][1] if curve else float("nan"), "loss_curve": curve}


def checkpoint_steps(steps: int, keep: int) -> set[int]:
    """The ``keep`` evenly spaced steps (1-based, the last one included) at which to save a checkpoint."""
    return {round(steps * (i + 1) / keep) for i in range(keep)} if keep > 0 else set()


def save_checkpoint(model: Any, folder: Path, step: int, lr: float) -> Path:
    """Write ``folder/step-<step>.pt`` with the state dict and the learning rate of that step (for TracIn:
    ``mechinterp.influence.load_checkpoints``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step}.pt"
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "lr": float(lr), "step": step}, path)
    return path


@torch.no_grad()
def evaluate(model: Any, n: int = 256, seed: int = 0) -> dict[str, dict[str, float]]:
    """Held-out accuracy and mean clean / corrupted metric for every task."""
    out = {}
    for name in EVAL_TASKS:
        kw = {"split": "test"} if name != "induction" else {}
        task = tasks.load(name, model, n=n, seed=seed, **kw)
        clean = model(task.clean_tokens.to(model.cfg.device))
        corrupted = model(task.corrupted_tokens.to(model.cfg.device))
        out[name] = {
            "accuracy": round(task.accuracy(clean), 4),
            "clean_metric": round(task.metric(clean).mean().item(), 4),
            "corrupted_metric": round(task.metric(corrupted).mean().item(), 4),
            "corrupted_accuracy": round(task.accuracy(corrupted), 4),
        }
    return out


@torch.no_grad()
def patch_heads(model: Any, name: str, n: int = 128, seed: int = 0) -> dict[str, float]:
    """Per head (and MLP): the metric's recovery when its corrupted output replaces the clean one.

    Returns ``(patched - clean) / (corrupted - clean)``, averaged metric over prompts:
    1 means patching that component alone destroys the behaviour, 0 means no effect.
    """
    kw = {"split": "test"} if name != "induction" else {}
    task = tasks.load(name, model, n=n, seed=seed, **kw)
    dev = model.cfg.device
    clean_tokens, corrupted_tokens = task.clean_tokens.to(dev), task.corrupted_tokens.to(dev)
    base = task.metric(model(clean_tokens)).mean().item()
    _, cache = model.run_with_cache(corrupted_tokens, names_filter=lambda h: h.endswith(("hook_z", "hook_mlp_out")))
    corrupted = task.metric(model(corrupted_tokens)).mean().item()
    effects = {}
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            hook_name = f"blocks.{layer}.attn.hook_z"

            def put(z: Tensor, hook: Any, head: int = head) -> Tensor:  # z: [batch, pos, head_index, d_head]
                z[:, :, head] = cache[hook.name][:, :, head]
                return z

            logits = model.run_with_hooks(clean_tokens, fwd_hooks=[(hook_name, put)])
            effects[f"L{layer}H{head}"] = (task.metric(logits).mean().item() - base) / (corrupted - base)
        mlp = f"blocks.{layer}.hook_mlp_out"
        logits = model.run_with_hooks(clean_tokens, fwd_hooks=[(mlp, lambda x, hook: cache[hook.name])])
        effects[f"MLP{layer}"] = (task.metric(logits).mean().item() - base) / (corrupted - base)
    return {k: round(v, 4) for k, v in effects.items()}


def _circuit(sweeps: dict[str, dict[str, float]]) -> dict[str, Any]:
    top = {t: sorted(e, key=lambda k: -abs(e[k]))[:5] for t, e in sweeps.items()}
    return {
        "source": "activation patching per head",
        "method": "corrupted -> clean, one head's hook_z (or one MLP's output) at a time, 128 held-out prompts; "
        "effect = (patched - clean) / (corrupted - clean) of the task metric",
        "task": "ioi",
        "nodes": ["embed", *[k for k in top["ioi"] if abs(sweeps["ioi"][k]) >= 0.1], "logits"],
        "edges": [],
        "note": "nodes: IOI components whose single patch moves the metric by >= 10% of the clean-corrupted gap; "
        "edges were not established (no path patching).",
        "effects": sweeps,
        "top": top,
    }


@keep_global_rng()  # training seeds torch globally (TransformerLens init); the caller's state comes back
def main(
    steps: int = 6000,
    out: str | Path | None = None,
    seed: int = 0,
    device: str = "cpu",
    max_seconds: float | None = None,
    template_dropout: float = 0.15,
    keep_checkpoints: int = 0,
) -> dict[str, Any]:
    """Train, evaluate and save ``toy-lm``; return the metrics.

    Args:
        steps: optimiser steps of :data:`RECIPE` ``["batch"]`` sequences.
        out: destination folder; the shipped zoo folder if omitted.
        seed: seeds the weights and the data.
        device: ``"cpu"`` or ``"cuda"``.
        max_seconds: stop training early after this many seconds (the steps done are
            recorded); ``None`` for no limit.
        template_dropout: probability of replacing each template word of a task row by
            ``<pad>`` (see :func:`sample_batch`); 0.15 is the shipped model's, 0 the first
            recipe's (batches identical to it).
        keep_checkpoints: save this many evenly spaced checkpoints (state dict and learning
            rate) to ``out/checkpoints/step-<n>.pt`` for TracIn; 0 (default) saves none.

    Returns:
        The metrics written to the card and ``metrics.json``.
    """
    out = Path(out) if out is not None else ZOO_DIR / NAME
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mechinterp-tok-") as tok_dir:
        model = make_model(seed, tok_dir, device)
        # as a loaded zoo model: the induction task then draws its words as users' runs do (with , . :)
        model.zoo_name = NAME  # type: ignore[attr-defined]
        metrics: dict[str, Any] = {"steps": steps, "seed": seed}
        if template_dropout > 0:  # recorded only when used: 0 writes what the first recipe wrote
            metrics["template_dropout"] = template_dropout
        metrics.update(_train(model, steps, seed, max_seconds, template_dropout, keep_checkpoints, out / "checkpoints"))
        metrics["train_wall_s"] = round(time.perf_counter() - start, 1)
        metrics["where"] = f"{device} ({torch.cuda.get_device_name() if device.startswith('cuda') else platform.processor() or 'cpu'})"
        metrics["n_params"] = sum(p.numel() for p in model.parameters())
        metrics["held_out"] = evaluate(model, n=256 if steps >= 100 else 16)  # smoke runs: a quick check
        sweeps = {t: patch_heads(model, t) for t in EVAL_TASKS} if steps >= 100 else {"ioi": patch_heads(model, "ioi", n=8)}
        model.to("cpu")
        model.cfg.device = "cpu"
        save_model(model, out, card=_card(model, metrics, sweeps), extra={"circuit.json": _circuit(sweeps)})
    atomic.write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def _dropout_note(m: dict[str, Any]) -> str:
    p = m.get("template_dropout", 0.0)
    if not p:
        return ""
    return (
        f"\n* Template-word dropout {p}: each prompt word of a task row other than the slot words (the ones "
        f"the corruption changes, and the ground truth) is replaced by `<pad>` with probability {p}."
    )


def _card(model: Any, m: dict[str, Any], sweeps: dict[str, dict[str, float]]) -> str:
    rows = "\n".join(
        f"| {t} | {r['accuracy']:.3f} | {r['clean_metric']:+.3f} | {r['corrupted_metric']:+.3f} | {r['corrupted_accuracy']:.3f} |"
        for t, r in m["held_out"].items()
    )
    tops = "\n".join(
        f"| {t} | " + ", ".join(f"{k} ({e[k]:+.2f})" for k in sorted(e, key=lambda k: -abs(e[k]))[:5]) + " |"
        for t, e in sweeps.items()
    )
    cfg = model.cfg
    flag = f" --template-dropout {m['template_dropout']}" if m.get("template_dropout") else ""
    mix = ", ".join(f"{k} {v}" for k, v in MIX.items())
    return f"""# toy-lm

A {cfg.n_layers}-layer transformer (attention + MLP) with a word-level tokenizer, trained from scratch to
solve the language tasks of `mechinterp.tasks` (`ioi`, `facts`, `sentiment`, `greater-than`) and
`induction`. {m['n_params'] * 4 / 1e6:.1f} MB; loads in about 2 s on a CPU once TransformerLens is imported. Every task's held-out
prompts are solved (table below).

## Architecture

`HookedTransformerConfig`: n_layers={cfg.n_layers}, d_model={cfg.d_model}, n_heads={cfg.n_heads},
d_head={cfg.d_head}, d_mlp={cfg.d_mlp}, n_ctx={cfg.n_ctx}, d_vocab={cfg.d_vocab}, act_fn="{cfg.act_fn}",
normalization_type="{cfg.normalization_type}", learned positional embeddings. {m['n_params']:,} parameters
({m['n_params'] * 4 / 1e6:.1f} MB in float32). Saved unprocessed; `load` folds LayerNorm and centres
weights as TransformerLens does.

## Tokenizer

Whitespace word-level (`mechinterp.zoo.tokenizer.word_tokenizer`) over `mechinterp.tasks.vocab.all_words()`:
ids 0 `<pad>`, 1 `<bos>`, 2 `<unk>`, then {cfg.d_vocab - 3} words (names, countries, capitals, review
words, `1700`..`1799`, `00`..`99`, template words, everyday filler words). `" Paris"` and `"Paris"` are
the same token; write punctuation with spaces around it.

## Training

* Corpus, per batch of {RECIPE['batch']} sequences: {mix}. Task rows are `split="train"` prompts
  followed by their answer (greater-than: a random year 1-20 above the start year); induction rows are
  `<bos>`, 0-10 random words, a random segment of 3-16 words, a 0-6 word gap, and the segment again
  (at least half of it). Every row starts with `<bos>`; rows are right-padded with `<pad>`, masked
  out of the next-token loss.{_dropout_note(m)}
* AdamW, lr {RECIPE['lr']} (warm-up {RECIPE['warmup']} steps, cosine to {RECIPE['min_lr_frac']}x),
  weight decay {RECIPE['weight_decay']}, gradient clipping {RECIPE['grad_clip']}; {m['steps']} steps, seed {m['seed']}.
* Trained on {m['where']} in {m['train_wall_s']} s; final training loss (mean of the last 100 steps)
  {m['final_train_loss']} (most of it is the irreducible loss of random words and names).
* Reproduce: `python -m mechinterp.zoo.train.toy_lm --steps {m['steps']} --seed {m['seed']} --device cuda{flag}`
  (the data and initial weights are fixed by the seed; GPU kernels are not bitwise deterministic).

## Held-out results

`split="test"` prompts, 256 per task, seed 0 (induction: `tasks.load("induction", model)`). Metric:
logit difference correct - wrong; greater-than: P(year > YY) - P(year <= YY).

| task | accuracy | clean metric | corrupted metric | corrupted accuracy |
|---|---|---|---|---|
{rows}

What is held out: ioi, name pairs never seen together; facts, each country asked in a template
never used for it in training; sentiment, whole reviews; greater-than, (event, start year) pairs;
induction, fresh random segments.

## Mechanism (what is known)

Activation patching per component (`circuit.json`, `"source": "activation patching per head"`):
one head's `hook_z` (or one MLP's output) from the corrupted run patched into the clean run,
effect = (patched - clean) / (corrupted - clean) on the task metric, 128 held-out prompts. The five
largest effects per task:

| task | components (effect) |
|---|---|
{tops}

Not established: edges between components (no path patching), which heads are name movers vs
S-inhibition for IOI. The induction data (random segment lengths and offsets) is the recipe that made
real induction heads form in `attn-only-2l`.
"""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument(
        "--template-dropout", type=float, default=0.15, metavar="P",
        help="replace each template word of a task row by <pad> with probability P (default 0.15, as shipped)",
    )
    parser.add_argument("--keep-checkpoints", type=int, default=0, metavar="N",
                        help="save N evenly spaced checkpoints to OUT/checkpoints for TracIn (default 0)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    result = main(steps=args.steps, out=args.out, seed=args.seed, device=args.device, max_seconds=args.max_seconds,
                  template_dropout=args.template_dropout, keep_checkpoints=args.keep_checkpoints)
    print(json.dumps({k: v for k, v in result.items() if k != "loss_curve"}, indent=2))
