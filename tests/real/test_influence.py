"""Training-data attribution on SmolLM2-135M-Instruct: three short sentences, last MLP only.

Known answer: the query asks for a *wrong* capital (" Rome" after "The capital of France is");
one training sentence states exactly that wrong fact. Its loss on " Rome" is large and that
token's gradient is the query's own gradient (same prefix, same target), so it must be the most
helpful sequence by EK-FAC influence on the real model, with the most influence on the " Rome"
token. The matrix is the last layer's grouped-query value matrix ``_W_V`` (3 KV heads, read
through RMSNorm), whose 110,592 entries are randomly projected to 256.

Cost: EK-FAC needs two passes over the training set and one ``vmap(grad)`` pass, plus the query
and one per-token pass, so the sentences are short (17 tokens in all) and the matrix small
(its factors are 576² and 192²; ``W_out``'s 1536² eigendecomposition alone took seconds).
Measured: 19 s of CPU time for the body at a load average of 12 on 2 cores (the earlier
version, cosine + EK-FAC on ``W_out`` over four sentences, took 88 s).
"""

from __future__ import annotations

import pytest

from mechinterp.core.hooks import active_hooks
from mechinterp.influence import InfluenceIndex

pytestmark = pytest.mark.real

TRAIN = ["Water boils at noon.", "The capital of France is Rome.", "My dog runs fast."]
QUERY = [("The capital of France is", " Rome")]


def test_the_sentence_stating_the_queried_fact_is_most_helpful(smollm2):
    w_v = f"blocks.{smollm2.cfg.n_layers - 1}.attn._W_V"  # [3, 576, 64]
    ek = InfluenceIndex(smollm2, "ekfac", params=[w_v], projection_dim=256, batch_size=4).fit(TRAIN)
    assert ek.projection_.out_dim == 256
    r = ek.score(QUERY, top_k=1)
    assert r.top(0, 1) == [1] and r.helpful[0][0]["score"] > 0
    assert r.ranks(0)[1] == 0 and float(r.scores[0, 1]) > 2 * float(r.scores[0].abs()[[0, 2]].max())
    row = r.helpful[0][0]
    assert row["tokens"][max(range(len(row["tokens"])), key=lambda i: row["token_scores"][i])] == " Rome"
    assert active_hooks(smollm2) == []
