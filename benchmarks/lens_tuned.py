"""Benchmark: tuned lens vs logit lens, per-layer KL to the final distribution and next-token
perplexity on held-out text, every layer trained.

Run:  .venv/bin/python benchmarks/lens_tuned.py [--model zoo:toy-lm | path/to/smollm2.gguf] [--steps 60]
Prints one table; copy it into benchmarks/results/lens.md.

Training text: for zoo models the four language tasks' train-split prompts (held out: their
test split); for other models the short English sentences below (held out: the last six).
"""

from __future__ import annotations

import argparse
import time

import torch

SENTENCES = [
    "The cat sat on the mat and looked out of the window.",
    "In the morning we went to the market to buy fresh bread.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "She opened the letter and read it twice before answering.",
    "The train to London leaves the station every hour.",
    "Many birds fly south for the winter to find food.",
    "He plays the piano every evening after dinner.",
    "The museum is closed on Mondays and public holidays.",
    "Our teacher asked us to write a short story about summer.",
    "The river flows through the valley and into the sea.",
    "They built a small house near the edge of the forest.",
    "Coffee is one of the most popular drinks in the world.",
    "The children played football in the park until it got dark.",
    "A good night of sleep helps you think more clearly.",
    "The company announced a new phone at the conference.",
    "My grandmother grows tomatoes and beans in her garden.",
    "The library opens at nine in the morning on weekdays.",
    "He forgot his umbrella and got wet in the rain.",
    "The mountain was covered with snow all year round.",
    "We watched a movie about a dog that saved its family.",
    "The doctor told him to drink more water every day.",
    "The city council voted to build a new bridge.",
]


def data(model, name: str, n: int) -> tuple[list[str], list[str]]:
    import mechinterp

    if not name.startswith("zoo:"):
        return SENTENCES[:-6], SENTENCES[-6:]
    tasks = ["ioi", "facts", "sentiment", "greater-than"]
    train = [p for t in tasks for p in mechinterp.tasks.load(t, model, n=n, split="train").clean_prompts]
    test = [p for t in tasks for p in mechinterp.tasks.load(t, model, n=max(4, n // 4), split="test").clean_prompts]
    return train, test


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="zoo:toy-lm")
    parser.add_argument("--n", type=int, default=32, help="training prompts per task (zoo models)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-tokens", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-bias", action="store_true", help="skip the bias-only lens (halves the time)")
    args = parser.parse_args()

    import mechinterp
    from mechinterp.lens import TunedLens, compare_lenses

    model = mechinterp.load(args.model, device=args.device)
    train, test = data(model, args.model, args.n)
    t0 = time.perf_counter()
    affine = TunedLens(steps=args.steps, lr=args.lr, batch_tokens=args.batch_tokens).fit(model, train, progress=False)
    t1 = time.perf_counter()
    lenses = {"logit": None, "tuned": affine}
    if not args.no_bias:
        lenses["bias only"] = TunedLens(kind="bias", steps=args.steps, lr=args.lr * 3, batch_tokens=args.batch_tokens).fit(
            model, train, progress=False)
    t2 = time.perf_counter()
    cmp = compare_lenses(model, test, lenses)
    print(f"model {args.model}: {len(train)} training prompts, {cmp.n_tokens} held-out tokens; {args.steps} steps x "
          f"{args.batch_tokens} tokens; fit {t1 - t0:.1f} s (affine), {t2 - t1:.1f} s (bias only) on {args.device}")
    names = list(lenses)
    print("| row | " + " | ".join(f"KL {n}" for n in names) + " | " + " | ".join(f"ppl {n}" for n in names) + " |")
    print("|---" * (1 + 2 * len(names)) + "|")
    for r, label in enumerate(cmp.rows):
        kl = " | ".join(f"{cmp.kl[n][r]:.3f}" for n in names)
        ppl = " | ".join(f"{cmp.perplexity[n][r]:.1f}" for n in names)
        print(f"| {label} | {kl} | {ppl} |")
    last = len(cmp.rows) - 1
    below = bool(torch.all(cmp.kl["tuned"][:last] < cmp.kl["logit"][:last]))
    print(f"tuned KL below logit-lens KL at every row but the last: {below}")


if __name__ == "__main__":
    main()
