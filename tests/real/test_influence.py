"""Training-data attribution on SmolLM2-135M-Instruct: a few short sequences, last block only.

The training sequence that states the queried fact must be the most similar one (gradient
cosine), the random projection must keep that ranking, and EK-FAC (grouped-query attention,
gated MLP, RMSNorm) must agree on the top sequence.
"""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.hooks import active_hooks
from mechinterp.influence import InfluenceIndex

pytestmark = pytest.mark.real

TRAIN = [
    "The capital of France is Paris.",
    "I had an apple and a pear for lunch today.",
    "The river flows quickly through the green valley.",
    "My brother plays football every Sunday afternoon.",
    "The capital of Japan is Tokyo.",
    "Water boils at one hundred degrees Celsius.",
]


def test_gradient_similarity_finds_the_stated_fact(smollm2):
    last = smollm2.cfg.n_layers - 1
    mlp = f"blocks.{last}.mlp"
    query = [("The capital of France is", " Paris"), ("The capital of Japan is", " Tokyo")]
    exact = InfluenceIndex(smollm2, "cosine", params=[f"{mlp}.W_out"], projection_dim=None, batch_size=2)
    exact = exact.fit(TRAIN).score(query, top_k=1, per_token=False)
    projected = InfluenceIndex(smollm2, "cosine", params=[mlp], projection_dim=256, batch_size=2).fit(TRAIN)
    n_params = sum(p.numel() for n, p in smollm2.named_parameters() if n in projected.names)
    assert projected.projection_.out_dim * 100 < n_params  # 3 x 576 x 1536 entries -> 3 x 256
    result = projected.score(query, top_k=1, per_token=False)
    assert exact.top(0, 1) == [0] and exact.top(1, 1) == [4]
    assert result.top(0, 1) == [0] and result.top(1, 1) == [4]
    ek = InfluenceIndex(smollm2, "ekfac", params=[f"{mlp}.W_out"], projection_dim=256, batch_size=2).fit(TRAIN)
    r = ek.score(query[:1], top_k=1)
    assert r.top(0, 1) == [0]
    assert max(r.helpful[0][0]["token_scores"]) == r.helpful[0][0]["token_scores"][
        r.helpful[0][0]["tokens"].index(" Paris")
    ]  # the fact's own token carries the most influence
    assert active_hooks(smollm2) == []
