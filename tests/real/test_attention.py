"""The real-model tier for the attention family, on SmolLM2-135M-Instruct (30 layers, 9 heads,
3 key/value heads, no BOS: the first token is a real word and the attention sink).

* head detection finds induction heads on repeated random tokens, and zero-ablating the top
  k of them raises the loss on the repeated half far more than ablating k random heads;
* rollout on "The capital of France is" puts all its mass on the sink, and ``sink="first"``
  moves it onto the prompt;
* every public entry point runs on the bf16 model, close to its fp32 numbers.
"""

from __future__ import annotations

import pytest
import torch

from mechinterp import SharedCache
from mechinterp.attention import (
    attention_flow,
    attention_patterns,
    attention_rollout,
    gradient_rollout,
    head_scores,
)
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.zoo.diagnostics import ablate_heads_hooks

pytestmark = pytest.mark.real

SEG, N_PROMPTS, K = 16, 6, 5
FACT = "The capital of France is"


def repeated_random_tokens(model, n=N_PROMPTS, seg=SEG, seed=0):
    """``A + A``: ``seg`` distinct random ordinary tokens, twice (no BOS, as the tokenizer does)."""
    special = set(model.tokenizer.all_special_ids)
    words = torch.tensor([i for i in range(1000, 20000) if i not in special])
    gen = torch.Generator().manual_seed(seed)
    a = torch.stack([words[torch.randperm(len(words), generator=gen)[:seg]] for _ in range(n)])
    return torch.cat([a, a], dim=1)


def repeated_half_loss(model, tokens, heads=()):
    """Mean next-token loss (nats) on the second copy, predicting ``A[1:]``, with ``heads``' z zeroed."""
    with torch.no_grad(), model.hooks(fwd_hooks=ablate_heads_hooks(list(heads))):
        logits = model(tokens)
    logp = logits.float().log_softmax(-1)[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
    return float(-logp[:, SEG:].mean())


@pytest.fixture(scope="module")
def induction(smollm2):
    tokens = repeated_random_tokens(smollm2)
    cache = SharedCache(smollm2, tokens, positions="all", progress=False)
    kinds = ["induction", "previous_token", "first_token"]
    plain = head_scores(smollm2, cache, kinds=kinds)
    sunk = head_scores(smollm2, cache, kinds=kinds, sink="first")  # the same patterns, no new pass
    return tokens, plain, sunk


def test_head_detection_finds_induction_heads(induction):
    _, plain, sunk = induction
    # The sink takes most of the attention, even on random tokens; the result says so.
    assert plain.first_token_mass > 0.4 and "sink='first'" in plain.sink_note()
    assert sunk.sink_positions == [0] and torch.isnan(sunk.get("first_token")).all()
    for scores, floor in ((plain, 0.7), (sunk, 0.85)):
        best = scores.ranking("induction")[:K]
        assert best[0][1] > floor, best
        assert all(15 <= int(name[1:name.index("H")]) <= 25 for name, _ in best), best  # mid-to-late layers
        # an induction head's attention is not a previous-token head's
        assert all(scores.get("previous_token")[int(n[1:n.index("H")]), int(n[n.index("H") + 1:])] < 0.3 for n, _ in best)
    # excluding the sink raises the scores of the heads that park less on it, and keeps the top heads
    assert len(set(plain.top("induction", K)) & set(sunk.top("induction", K))) >= 3


def test_ablating_induction_heads_raises_the_loss_far_more_than_random_heads(smollm2, induction):
    tokens, _, sunk = induction
    clean = repeated_half_loss(smollm2, tokens)
    top = sunk.top("induction", K)
    ablated = repeated_half_loss(smollm2, tokens, top)
    gen = torch.Generator().manual_seed(1)
    names = [f"L{i // 9}H{i % 9}" for i in range(30 * 9)]
    pool = [n for n in names if n not in top]
    random_rises = [
        repeated_half_loss(smollm2, tokens, [pool[i] for i in torch.randperm(len(pool), generator=gen)[:K].tolist()]) - clean
        for _ in range(3)
    ]
    assert_no_hooks(smollm2)
    rise = ablated - clean
    assert clean < 4.5  # it copies: the first copy of A costs ~14 nats per token
    # measured: +6.3 nats against +0.2, +1.1, +0.4 (see benchmarks/results/attention.md)
    assert rise > 3.0 and rise > 3 * max(max(random_rises), 0.1), (clean, ablated, random_rises)


def test_rollout_sink_on_the_fact_prompt(smollm2):
    plain = attention_rollout(smollm2, FACT)
    sunk = attention_rollout(smollm2, FACT, sink="first")
    renorm = attention_rollout(smollm2, FACT, sink="first", sink_mode="renormalise")
    assert plain.str_tokens[0] == ["The", " capital", " of", " France", " is"]
    assert plain.scores(0)[0] > 0.99 and "sink='first'" in plain.sink_note()  # all of it on the sink
    assert sunk.scores(0)[0] == 0 and float(sunk.sink_share[0]) > 0.99
    torch.testing.assert_close(sunk.scores(0).sum(), torch.tensor(1.0))
    assert (sunk.scores(0)[1:] > 0.01).all()  # every other token gets a share
    # renormalising crowns the next token as the new sink; 'self' spreads more
    assert renorm.scores(0)[1] > 0.95 and sunk.scores(0)[1] < renorm.scores(0)[1] - 0.1


def test_bf16_public_entry_points(smollm2, smollm2_bf16):
    model = smollm2_bf16
    pats = attention_patterns(model, FACT, layers=[0, 29])
    assert pats.dtype == "bfloat16" and pats.patterns.dtype == torch.float32
    scores = head_scores(model, FACT, kinds=["previous_token", "first_token"], sink=[0])
    assert scores.dtype == "bfloat16" and torch.isfinite(scores.get("previous_token")).all()
    full = attention_rollout(smollm2, FACT, sink="first")
    half = attention_rollout(model, FACT, sink="first")
    torch.testing.assert_close(half.scores(0), full.scores(0), atol=0.05, rtol=0)
    flow = attention_flow(model, FACT, queries=[-1], sink="first", start_layer=24)
    assert flow.scores(0)[0] == 0 and torch.isfinite(flow.scores(0)).all()
    grad = gradient_rollout(model, FACT, target=" Paris", sink="first")
    assert grad.scores(0)[0] == 0 and torch.isfinite(grad.matrix).all() and grad.dtype == "bfloat16"
    assert_no_hooks(model)
