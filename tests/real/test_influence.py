"""Training-data attribution on SmolLM2-135M-Instruct: a few short sequences, last MLP only.

Known answer: the query asks for a *wrong* capital (" Rome" after "The capital of France is");
one training sentence states exactly that wrong fact. Its loss on " Rome" is large and that
token's gradient is the query's own gradient (same prefix, same target), so it must be the most
helpful sequence, by gradient cosine (randomly projected) and by EK-FAC (grouped-query
attention, gated MLP, RMSNorm model), with the most influence on the " Rome" token.
"""

from __future__ import annotations

import pytest

from mechinterp.core.hooks import active_hooks
from mechinterp.influence import InfluenceIndex

pytestmark = pytest.mark.real

TRAIN = [
    "The river flows quickly through the green valley.",
    "The capital of France is Rome.",
    "My brother plays football every Sunday.",
    "Water boils at one hundred degrees.",
]
QUERY = [("The capital of France is", " Rome")]


def test_the_sentence_stating_the_queried_fact_is_most_helpful(smollm2):
    w_out = f"blocks.{smollm2.cfg.n_layers - 1}.mlp.W_out"  # [1536, 576]
    projected = InfluenceIndex(smollm2, "cosine", params=[w_out], projection_dim=256, batch_size=4).fit(TRAIN)
    assert projected.projection_.out_dim == 256  # of 884,736 entries
    assert projected.score(QUERY, top_k=1, per_token=False).top(0, 1) == [1]
    ek = InfluenceIndex(smollm2, "ekfac", params=[w_out], projection_dim=256, batch_size=4).fit(TRAIN)
    r = ek.score(QUERY, top_k=1)
    assert r.top(0, 1) == [1] and r.helpful[0][0]["score"] > 0
    row = r.helpful[0][0]
    assert row["tokens"][max(range(len(row["tokens"])), key=lambda i: row["token_scores"][i])] == " Rome"
    assert active_hooks(smollm2) == []
