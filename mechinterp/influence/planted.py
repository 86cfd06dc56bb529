"""A tiny fact-recall language model with planted made-up facts (the known-answer experiment).

Token ids: 0 pad, 1 bos, 2..4 relations, 6..9 fillers, subjects, objects, then one made-up
object per planted fact. Every sequence is ``bos filler subject relation object``. Ordinary
subjects have a fact for every relation, each seen ``copies`` times with random fillers; each
*planted* fact (a made-up subject, a relation and a made-up object, like "the capital of
Zorbia is Quux") is seen only in ``planted_copies`` sequences, so the planted sequences are,
by construction, the only training data that teach the model the query ``bos filler
planted-subject relation -> made-up object``. Used by ``tests/influence/test_planted.py`` and ``experiments/influence/planted_lds.py``
(retraining on random halves for the linear datamodeling score).

Example:
    >>> data = make_data()
    >>> model = make_model(data.d_vocab)
    >>> _ = train(model, data.tokens, steps=60)  # about 3 s on one CPU thread
    >>> bool(query_logprobs(model, data).min() > -1)
    True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

__all__ = ["Planted", "make_data", "make_model", "train", "query_logprobs"]

N_REL, N_FILL, FIRST_REL, FIRST_FILL = 3, 4, 2, 6


@dataclass(frozen=True)
class Planted:
    """A planted-fact training set: tokens, which rows teach each query, and the queries."""

    tokens: torch.Tensor  # [n, 5]
    planted: dict[int, list[int]]  # query number -> training rows that teach it
    queries: list[tuple[list[int], int]]  # (prompt ids, target id)
    d_vocab: int


def make_data(n_subjects: int = 24, n_planted: int = 8, n_objects: int = 12, copies: int = 5, planted_copies: int = 2, seed: int = 0) -> Planted:
    """``n_subjects`` x 3 ordinary facts (``copies`` rows each) and ``n_planted`` made-up facts
    (``planted_copies`` rows each), shuffled; one query per planted fact."""
    rng = random.Random(seed)
    first_subj = FIRST_FILL + N_FILL
    first_obj = first_subj + n_subjects + n_planted
    obj = lambda: first_obj + rng.randrange(n_objects)  # noqa: E731
    fill = lambda: FIRST_FILL + rng.randrange(N_FILL)  # noqa: E731
    rows: list[list[int]] = []
    for s in range(n_subjects):
        for r in range(N_REL):
            o = obj()
            rows += [[1, fill(), first_subj + s, FIRST_REL + r, o] for _ in range(copies)]
    planted_rows: list[list[int]] = []
    queries = []
    for p in range(n_planted):
        s, r, o = first_subj + n_subjects + p, FIRST_REL + rng.randrange(N_REL), first_obj + n_objects + p
        planted_rows.append([[1, fill(), s, r, o] for _ in range(planted_copies)])
        queries.append(([1, fill(), s, r], o))
    order = list(range(len(rows) + n_planted * planted_copies))
    all_rows = rows + [row for group in planted_rows for row in group]
    rng.shuffle(order)
    where = {old: new for new, old in enumerate(order)}
    planted = {p: [where[len(rows) + p * planted_copies + c] for c in range(planted_copies)] for p in range(n_planted)}
    tokens = torch.tensor([all_rows[i] for i in order])
    return Planted(tokens, planted, queries, first_obj + n_objects + n_planted)


def make_model(d_vocab: int, seed: int = 0, d_model: int = 32, n_layers: int = 1):
    """A small seeded HookedTransformer (LayerNorm, GELU MLP, 2 heads, n_ctx 8)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=n_layers, d_model=d_model, n_heads=2, d_head=d_model // 2, d_mlp=4 * d_model, n_ctx=8, d_vocab=d_vocab,
        act_fn="gelu", normalization_type="LN", seed=seed, device="cpu",
    )
    torch.manual_seed(seed)
    return HookedTransformer(cfg)


def train(model, tokens: torch.Tensor, steps: int = 60, lr: float = 1e-2, keep: int = 0, weight_decay: float = 0.0):
    """Full-batch AdamW on the summed-per-sequence next-token loss (mean over sequences).

    Returns the list of ``(state_dict, lr)`` checkpoints kept at ``keep`` evenly spaced steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    marks = {int(round(steps * (i + 1) / keep)) - 1 for i in range(keep)} if keep else set()
    ckpts = []
    model.train()
    for step in range(steps):
        logits = model(tokens)
        loss = -logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None]).sum() / len(tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in marks:
            ckpts.append(({k: v.detach().clone() for k, v in model.state_dict().items()}, lr))
    model.eval()
    return ckpts


@torch.no_grad()
def query_logprobs(model, data: Planted) -> torch.Tensor:
    """``[n_planted]`` log-probability of each query's made-up object."""
    prompts = torch.tensor([q for q, _ in data.queries])
    targets = torch.tensor([t for _, t in data.queries])
    return model(prompts)[:, -1].log_softmax(-1).gather(-1, targets[:, None])[:, 0]
