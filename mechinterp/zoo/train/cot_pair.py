"""Train ``zoo:cot-reader`` and ``zoo:cot-direct``: two scratchpad models, one faithful, one not.

The ground truth for :func:`mechinterp.explain.cot_faithfulness` (Lanham et al., 2023). Both
models see the same sequences of a two-step task, the **cipher sum**::

    <bos> d1 d2 : s1 s2 = a

The question is two digits; the scratchpad deciphers each through a fixed permutation of
the digits (``s_i = CIPHER[d_i]``, step 1, one lookup per digit) and the answer adds the
deciphered digits (``a = (s1 + s2) mod 10``, step 2). Both models learn to write the
scratchpad (next-token loss on it, on honest rows) and to answer. They differ in what the
answer is trained to be when the scratchpad is **not** honest (half the rows: each step
replaced by a random digit with probability 1/2, at least one):

* ``cot-reader``: the sum of the **written** steps. Its answer must read its scratchpad.
* ``cot-direct``: the sum of the **true** steps, computed from the question. The scratchpad
  is present in every row but not needed, and a wrong one must be ignored.

On an honest scratchpad both give the same answer, so accuracy cannot tell them apart; the
faithfulness measure must. Every one of the 100 questions is in training: the ground
truth here is how each model uses its scratchpad, not generalisation. Run it (about a
minute of CPU time on one core for both)::

    python -m mechinterp.zoo.train.cot_pair             # writes mechinterp/zoo/models/cot-{reader,direct}
    python -m mechinterp.zoo.train.cot_pair --steps 50 --out /tmp/cot
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from mechinterp.core import atomic
from mechinterp.core.rng import keep_global_rng
from mechinterp.core.zoo_format import ZOO_DIR, save_model
from mechinterp.zoo.tokenizer import word_tokenizer

__all__ = ["NAMES", "WORDS", "CIPHER", "make_model", "sample", "examples", "evaluate", "main"]

NAMES = {"reader": "cot-reader", "direct": "cot-direct"}
DIGITS = [str(i) for i in range(10)]
WORDS = [*DIGITS, ":", "="]
N_SPECIAL = 3  # <pad> <bos> <unk>
BOS, COLON, EQ = 1, N_SPECIAL + 10, N_SPECIAL + 11
CIPHER = [7, 2, 9, 4, 0, 6, 1, 8, 3, 5]  # step 1: s_i = CIPHER[d_i] (a fixed permutation)
N_DIGITS = 2
PAD0 = N_DIGITS + 2  # position of the first scratchpad step

ARCH = dict(n_layers=2, n_heads=4, d_model=64, d_head=16, d_mlp=256, n_ctx=16, act_fn="gelu",
            normalization_type="LN", positional_embedding_type="standard")
RECIPE = dict(batch=128, lr=3e-3, final_lr_frac=0.05, weight_decay=0.01, warmup=100, noisy_rows=0.5, noisy_step=0.5)


def make_model(seed: int = 0, tokenizer_dir: str | Path | None = None, name: str = NAMES["reader"]) -> Any:
    """A freshly initialised (seeded) model with the zoo word tokenizer over digits, ``:`` and ``=``."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tok = word_tokenizer(WORDS, tokenizer_dir)
    cfg = HookedTransformerConfig(**ARCH, d_vocab=len(WORDS) + N_SPECIAL, seed=seed, model_name=name, device="cpu")
    torch.manual_seed(seed)
    return HookedTransformer(cfg, tokenizer=tok)


def _tok(d: Tensor) -> Tensor:
    return d + N_SPECIAL


def sample(gen: torch.Generator, n: int) -> tuple[Int[Tensor, "n seq"], Int[Tensor, " n"], Int[Tensor, " n"], Tensor]:
    """``n`` training rows: the token ids, the reader's answer, the direct model's answer, honest mask."""
    d = torch.randint(0, 10, (n, N_DIGITS), generator=gen)
    s = torch.tensor(CIPHER)[d]
    honest = torch.rand(n, generator=gen) >= RECIPE["noisy_rows"]
    flip = torch.rand(n, N_DIGITS, generator=gen) < RECIPE["noisy_step"]
    flip[torch.arange(n), torch.randint(0, N_DIGITS, (n,), generator=gen)] = True  # at least one step changed
    flip &= ~honest[:, None]
    wrong = (s + torch.randint(1, 10, (n, N_DIGITS), generator=gen)) % 10  # a different digit
    written = torch.where(flip, wrong, s)
    col = torch.full((n, 1), 0)
    seq = torch.cat([col + BOS, _tok(d), col + COLON, _tok(written), col + EQ], 1)
    return seq, written.sum(1) % 10, s.sum(1) % 10, honest


def examples(n: int = 200, seed: int = 1) -> list[tuple[Tensor, Tensor, Tensor]]:
    """``(question, scratchpad, suffix)`` token triples with honest scratchpads, for :func:`cot_faithfulness`."""
    gen = torch.Generator().manual_seed(seed)
    d = torch.randint(0, 10, (n, N_DIGITS), generator=gen)
    s = torch.tensor(CIPHER)[d]
    return [(torch.cat([torch.tensor([BOS]), _tok(d[i]), torch.tensor([COLON])]), _tok(s[i]), torch.tensor([EQ]))
            for i in range(n)]


def _train(model: Any, kind: str, steps: int, seed: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    low = RECIPE["final_lr_frac"]

    def lr(step: int) -> float:
        if step < RECIPE["warmup"]:
            return (step + 1) / RECIPE["warmup"]
        t = (step - RECIPE["warmup"]) / max(1, steps - RECIPE["warmup"])
        return low + (1 - low) * 0.5 * (1 + torch.cos(torch.tensor(t * torch.pi)).item())

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr)
    losses = []
    model.train()
    for _ in range(steps):
        seq, reader_ans, direct_ans, honest = sample(gen, RECIPE["batch"])
        answer = reader_ans if kind == "reader" else direct_ans
        logits = model(seq)  # [batch, pos, d_vocab]
        ans_loss = torch.nn.functional.cross_entropy(logits[:, -1], _tok(answer))
        # writing the scratchpad: each step predicted from the position before it, honest rows only
        pad_logits = logits[honest, PAD0 - 1: PAD0 + N_DIGITS - 1].reshape(-1, logits.shape[-1])
        pad_loss = torch.nn.functional.cross_entropy(pad_logits, seq[honest, PAD0: PAD0 + N_DIGITS].reshape(-1)) if honest.any() else 0.0
        loss = ans_loss + pad_loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss))
        if len(losses) % 250 == 0:
            print(f"{kind} step {len(losses)} loss {sum(losses[-50:]) / 50:.4f}", flush=True)
    model.eval()
    return {"final_loss": round(sum(losses[-50:]) / len(losses[-50:]), 4)}


def evaluate(model: Any, n: int = 1000, seed: int = 2) -> dict[str, Any]:
    """Accuracy on honest scratchpads, on self-written scratchpads, and with a wrong scratchpad;
    the cot_faithfulness dependence on 200 honest examples."""
    from mechinterp.explain import cot_faithfulness

    gen = torch.Generator().manual_seed(seed)
    seq, reader_ans, direct_ans, honest = sample(gen, n)
    with torch.no_grad():
        pred = model(seq)[:, -1].argmax(-1) - N_SPECIAL
        # greedy: write the scratchpad, then answer
        gen_seq = seq[:, :PAD0].clone()
        for _ in range(N_DIGITS):
            nxt = model(gen_seq)[:, -1].argmax(-1, keepdim=True)
            gen_seq = torch.cat([gen_seq, nxt], 1)
        wrote_right = (gen_seq[:, PAD0:] == _tok(torch.tensor(CIPHER)[seq[:, 1: N_DIGITS + 1] - N_SPECIAL])).all(1)
        gen_seq = torch.cat([gen_seq, torch.full((n, 1), EQ)], 1)
        gen_pred = model(gen_seq)[:, -1].argmax(-1) - N_SPECIAL
    noisy = ~honest
    res = cot_faithfulness(model, examples(200), filler=None, corrupt_vocab=list(range(N_SPECIAL, N_SPECIAL + 10)))
    return {
        "accuracy_honest_scratchpad": round(float((pred[honest] == direct_ans[honest]).float().mean()), 4),
        "accuracy_self_written_scratchpad": round(float((gen_pred == direct_ans).float().mean()), 4),
        "scratchpad_written_correctly": round(float(wrote_right.float().mean()), 4),
        "wrong_scratchpad_answer_follows_scratchpad": round(float((pred[noisy] == reader_ans[noisy]).float().mean()), 4),
        "wrong_scratchpad_answer_follows_question": round(float((pred[noisy] == direct_ans[noisy]).float().mean()), 4),
        "faithfulness_dependence": {k: round(v, 4) for k, v in res.dependence.items()},
        "faithfulness_mean_prob_drop": {k: round(float(res.prob_drop[i].mean()), 4) for i, k in enumerate(res.interventions)},
    }


@keep_global_rng()
def main(steps: int = 1500, out: str | Path | None = None, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Train, evaluate and save both models under ``out`` (default: the zoo); return their metrics."""
    root = Path(out) if out is not None else ZOO_DIR
    results = {}
    for kind, name in NAMES.items():
        with tempfile.TemporaryDirectory() as tmp:
            model = make_model(seed, tmp, name)
            start, cpu = time.perf_counter(), time.process_time()
            metrics: dict[str, Any] = {"steps": steps, "seed": seed, **_train(model, kind, steps, seed)}
            metrics["train_wall_s"] = round(time.perf_counter() - start, 1)
            metrics["train_cpu_s"] = round(time.process_time() - cpu, 1)
            metrics["torch_threads"] = torch.get_num_threads()
            metrics["n_params"] = sum(p.numel() for p in model.parameters())
            metrics.update(evaluate(model))
            folder = root / name
            save_model(model, folder, card=_card(kind, name, metrics))
        atomic.write_text(folder / "metrics.json", json.dumps(metrics, indent=2))
        results[name] = metrics
    return results


def _card(kind: str, name: str, m: dict[str, Any]) -> str:
    arch = ", ".join(f"{k}={v}" for k, v in ARCH.items())
    recipe = ", ".join(f"{k}={v}" for k, v in RECIPE.items())
    other = NAMES["direct" if kind == "reader" else "reader"]
    dep, drop = m["faithfulness_dependence"], m["faithfulness_mean_prob_drop"]
    what = ("its answer is the sum of the steps **written in its scratchpad**: it was trained to answer that "
            "even when the scratchpad is wrong, so the answer must read the scratchpad (a faithful chain of thought)"
            if kind == "reader" else
            "its answer is the sum computed **from the question**: it was trained with a scratchpad in every row "
            "but to ignore it when it is wrong, so the scratchpad is present and not needed (an unfaithful chain "
            "of thought: it writes the steps and answers without them)")
    return f"""# {name}

One of a pair of 2-layer transformers for the chain-of-thought faithfulness ground truth
(`mechinterp.explain.cot_faithfulness`; its twin is `zoo:{other}`). Task, the **cipher sum**:

    <bos> d1 d2 : s1 s2 = a

two question digits; a scratchpad that deciphers each (`s_i = CIPHER[d_i]`, CIPHER =
{CIPHER}); the answer `a = (s1 + s2) mod 10`. Both twins write the scratchpad and answer
correctly when it is honest. This one: {what}.

## Architecture and tokenizer

TransformerLens `HookedTransformerConfig`: {arch}, d_vocab={len(WORDS) + N_SPECIAL}
({m["n_params"]} parameters). Word-level tokenizer (`mechinterp.zoo.tokenizer.word_tokenizer`):
`<pad>`=0, `<bos>`=1, `<unk>`=2, the digits `0`..`9` = 3..12, `:` = 13, `=` = 14. Write tokens with
spaces: `model.to_tokens("4 7 : 0 1 =")`.

## Training (`python -m mechinterp.zoo.train.cot_pair`)

* Rows of the form above. Half the rows are honest; in the other half each step is replaced by a
  different random digit with probability 1/2 (at least one step). Answer target: {"the sum of the written steps" if kind == "reader" else "the sum of the true steps (from the question)"}.
  Next-token loss on the scratchpad steps on honest rows (the model writes its own scratchpad).
* AdamW, {recipe}; {m["steps"]} steps, seed {m["seed"]}; CPU, {m["torch_threads"]} thread(s):
  {m["train_cpu_s"]} s CPU time ({m["train_wall_s"]} s wall). Final loss (last 50 steps) {m["final_loss"]}.
* All 100 questions occur in training: the ground truth is how the answer uses the scratchpad.

## Measured (`metrics.json`; 1,000 fresh rows, seed 2)

| what | value |
|---|---|
| answer correct, honest scratchpad given | {m["accuracy_honest_scratchpad"]:.3f} |
| scratchpad written correctly (greedy) | {m["scratchpad_written_correctly"]:.3f} |
| answer correct after writing its own scratchpad | {m["accuracy_self_written_scratchpad"]:.3f} |
| wrong scratchpad given: answer = sum of the written steps | {m["wrong_scratchpad_answer_follows_scratchpad"]:.3f} |
| wrong scratchpad given: answer = the true sum | {m["wrong_scratchpad_answer_follows_question"]:.3f} |

**Chain-of-thought faithfulness** (`cot_faithfulness(model, examples(200), filler=None,
corrupt_vocab=digits)` on 200 honest examples, `mechinterp.zoo.train.cot_pair.examples`):

| intervention | answer changed | mean p(answer) drop |
|---|---|---|
""" + "\n".join(f"| {k} | {dep[k]:.3f} | {drop[k]:.3f} |" for k in dep) + f"""

The measure tells the twins apart (`tests/explain/test_cot.py` asserts it with the shipped
files): see the same table in `zoo:{other}`'s card. **Read the `corrupt` row**: one step replaced by
another digit changes the reader's answer every time and the direct twin's never. The truncations
change both twins' answers, since neither saw a prompt without its scratchpad in training (a
shorter prompt is out of distribution); they do not tell the twins apart. A wrong scratchpad
agrees with the other twin's answer about 1 time in 10 by chance (the 0.065 above).
"""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for model_name, result in main(steps=args.steps, out=args.out, seed=args.seed).items():
        print(model_name, json.dumps(result, indent=2))
