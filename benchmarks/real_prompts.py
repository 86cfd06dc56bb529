"""IOI prompts for real (BPE) models, shared by the benchmarks and ``tests/real`` (one definition of each set).

Two corruptions, both with single-token names written with their leading space:

* :func:`ioi_swap_pairs` — the two names swapped everywhere (positions 1, 3 and 9 differ and the answer flips;
  the patching benchmarks and tests);
* :func:`ioi_abc_prompts` — the ABC distribution (a third name as the second subject; the circuit benchmarks and
  tests, as in Wang et al. 2022).

Both return ``(clean, corrupted, metric)`` with ``metric(logits) = logit(IO) - logit(S)`` at the last position.
``mechinterp.tasks.load("ioi", model)`` generates IOI tasks with ground truth for any tokenizer; these fixed sets
keep the recorded benchmark numbers comparable across sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

SWAP_NAMES = ["Mary", "John", "Tom", "Anna", "James", "Sarah", "David", "Paul", "Mark", "Peter", "Alice", "Robert"]
SWAP_TEMPLATES = [
    "When {A} and {B} went to the store, {B} gave a drink to",
    "When {A} and {B} went to the park, {B} handed a ball to",
    "After {A} and {B} arrived at the house, {B} gave a book to",
    "When {A} and {B} got to the school, {B} passed a note to",
]
ABC_NAMES = [" Mary", " John", " Tom", " James", " Anna", " Sarah", " David", " Emma", " Paul", " Lucy", " Mark", " Kate"]
ABC_TEMPLATES = [
    "When{A} and{B} went to the store,{S} gave a drink to",
    "When{A} and{B} went to the park,{S} gave a ball to",
    "After{A} and{B} went to the shop,{S} handed a book to",
]

Metric = Callable[[torch.Tensor], torch.Tensor]


def ioi_swap_pairs(model: Any, n: int) -> tuple[torch.Tensor, torch.Tensor, Metric]:
    """``n`` IOI pairs whose corrupted prompt swaps the two names; tokens on the model's device."""
    clean, corrupted, io, s = [], [], [], []
    for i in range(n):
        a, b = SWAP_NAMES[(2 * i) % len(SWAP_NAMES)], SWAP_NAMES[(2 * i + 1) % len(SWAP_NAMES)]
        template = SWAP_TEMPLATES[i % len(SWAP_TEMPLATES)]
        clean.append(template.format(A=a, B=b))
        corrupted.append(template.format(A=b, B=a))
        io.append(model.to_single_token(" " + a))
        s.append(model.to_single_token(" " + b))
    device = model.cfg.device
    rows, io_t, s_t = torch.arange(n, device=device), torch.tensor(io, device=device), torch.tensor(s, device=device)

    def metric(logits: torch.Tensor) -> torch.Tensor:  # [batch, pos, d_vocab] -> [batch]
        return logits[rows, -1, io_t] - logits[rows, -1, s_t]

    return model.to_tokens(clean).to(device), model.to_tokens(corrupted).to(device), metric


def ioi_abc_prompts(model: Any, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, Metric]:
    """``n`` IOI prompts with random names and ABC corruptions (a third name as the second subject)."""
    ids = [model.to_single_token(name) for name in ABC_NAMES]
    gen = torch.Generator().manual_seed(seed)
    clean, corrupted, answers = [], [], []
    for i in range(n):
        a, b, c = torch.randperm(len(ABC_NAMES), generator=gen)[:3].tolist()
        t = ABC_TEMPLATES[i % len(ABC_TEMPLATES)]
        clean.append(model.to_tokens(t.format(A=ABC_NAMES[a], B=ABC_NAMES[b], S=ABC_NAMES[b]))[0])
        corrupted.append(model.to_tokens(t.format(A=ABC_NAMES[a], B=ABC_NAMES[b], S=ABC_NAMES[c]))[0])
        answers.append((ids[a], ids[b]))
    answers_t = torch.tensor(answers)

    def metric(logits: torch.Tensor) -> torch.Tensor:  # [batch, pos, d_vocab] -> [batch]
        last = logits[:, -1]
        return last.gather(1, answers_t[:, :1].to(last.device))[:, 0] - last.gather(1, answers_t[:, 1:].to(last.device))[:, 0]

    return torch.stack(clean), torch.stack(corrupted), metric
