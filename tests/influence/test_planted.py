"""The known answer: planted made-up facts are found by influence, and retraining confirms them.

A 1-layer model is trained (60 full-batch steps, ~3 s) on 376 sequences, 16 of which plant 8
made-up facts (2 rows each) seen nowhere else. For each fact's query, the bar (issue 19) is
that both planted rows rank in the top 1% of the training set (ranks 0-3) for at least 90%
of the queries by EK-FAC. Measured here: EK-FAC 8/8 (both rows at ranks 0-1), TracIn over 3
checkpoints 8/8, gradient dot product 7/8 (one query's rows at ranks 7-8).
"""

from __future__ import annotations

import math

import pytest
import torch

from mechinterp.core.hooks import active_hooks
from mechinterp.influence import InfluenceIndex, tracin
from mechinterp.influence.planted import make_data, make_model, query_logprobs, train


@pytest.fixture(scope="module")
def planted():
    data = make_data()
    model = make_model(data.d_vocab)
    checkpoints = train(model, data.tokens, steps=60, keep=3)
    queries = [(torch.tensor(p), t) for p, t in data.queries]
    return data, model, checkpoints, queries


def _hits(result, data) -> float:
    cut = math.ceil(0.01 * len(data.tokens))  # top 1%: ranks 0 .. cut-1
    return sum(bool((result.ranks(q)[rows] < cut).all()) for q, rows in data.planted.items()) / len(data.planted)


def test_ekfac_ranks_the_planted_rows_first(planted):
    data, model, _, queries = planted
    ekfac = InfluenceIndex(model, "ekfac", projection_dim=None, batch_size=64).fit(data.tokens).score(queries, per_token=False)
    assert _hits(ekfac, data) >= 0.9
    for q, rows in data.planted.items():  # and they are helpful: training on them raises the target
        assert (ekfac.scores[q, rows] > 0).all()
    dot = InfluenceIndex(model, "dot", projection_dim=None, batch_size=64).fit(data.tokens).score(queries, per_token=False)
    assert _hits(dot, data) < _hits(ekfac, data)  # the identity "Hessian" is worse here (7/8)
    assert active_hooks(model) == []


def test_ekfac_with_projection_still_finds_them(planted):
    data, model, _, queries = planted
    index = InfluenceIndex(model, "ekfac", projection_dim=256, batch_size=64).fit(data.tokens)
    assert index.projection_.out_dim < sum(p.numel() for n, p in model.named_parameters() if n in index.names) / 7
    assert _hits(index.score(queries, per_token=False), data) >= 0.9


def test_tracin_over_checkpoints_finds_them(planted):
    data, model, checkpoints, queries = planted
    result = tracin(model, checkpoints, data.tokens, queries[:4], projection_dim=None, batch_size=64, per_token=False)
    sub = type(data)(data.tokens, {q: data.planted[q] for q in range(4)}, data.queries[:4], data.d_vocab)
    assert _hits(result, sub) >= 0.75


def test_leaving_the_planted_rows_out_removes_the_fact(planted):
    """Ground truth by retraining: without its planted rows a query's target is not learned."""
    data, model, _, _ = planted
    drop = {r for rows in data.planted.values() for r in rows}
    keep = torch.tensor([i for i in range(len(data.tokens)) if i not in drop])
    retrained = make_model(data.d_vocab)
    train(retrained, data.tokens[keep], steps=60)
    with_them, without = query_logprobs(model, data), query_logprobs(retrained, data)
    assert (with_them > -0.5).all() and (without < -3).all()


def test_per_token_influence_sits_on_the_made_up_object(planted):
    data, model, _, queries = planted
    index = InfluenceIndex(model, "ekfac", projection_dim=None, batch_size=64).fit(data.tokens)
    result = index.score(queries[:2], top_k=2)
    for q in range(2):
        for row in result.helpful[q]:
            scores = torch.tensor(row["token_scores"])
            assert math.isclose(float(scores.sum()), row["score"], rel_tol=1e-3, abs_tol=1e-6)  # exact: no projection
            assert int(scores.argmax()) == 4  # the object token (the fact itself)
