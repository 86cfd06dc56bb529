"""InfluenceResult: ranks, round trip through JSON, offline HTML, plot."""

from __future__ import annotations

import pytest
import torch

from mechinterp.errors import MechinterpError
from mechinterp.influence import InfluenceResult, influence


@pytest.fixture(scope="module")
def result(tiny_model):
    train = ["w1 w2 w3 w4", "w9 w8 w7", "w5 w6 w5 w6", "w1 w2 w3 w9"]
    return influence(tiny_model, train, [("w1 w2 w3", "w4"), ("w5 w6", "w5")], top_k=2, projection_dim=None)


def test_ranks_and_top_agree(result):
    for q in range(2):
        ranks = result.ranks(q)
        assert sorted(ranks.tolist()) == list(range(4))
        assert int(ranks[result.top(q, 1)[0]]) == 0
        assert result.top(q, 1, harmful=True)[0] == result.harmful[q][0]["index"]
        assert [r["index"] for r in result.helpful[q]] == result.top(q, 2)
    with pytest.raises(MechinterpError, match="out of range"):
        result.ranks(5)


def test_per_token_scores_sum_to_the_sequence_score(result):
    for q in range(2):
        for row in result.helpful[q] + result.harmful[q]:
            assert len(row["token_scores"]) == len(row["tokens"])
            assert row["token_scores"][0] == 0.0
            assert sum(row["token_scores"]) == pytest.approx(row["score"], rel=1e-3, abs=1e-6)


def test_round_trip_html_and_plot(result, tmp_path):
    back = InfluenceResult.load(result.save(tmp_path / "r.json"))
    torch.testing.assert_close(back.scores, result.scores)
    assert back.helpful == result.helpful and back.method == "ekfac"
    html = result.to_html()
    assert "w4" in html and "http" not in html.replace("http-equiv", "")
    assert result._repr_html_() == html
    fig = result.plot(query=1)
    assert fig.axes
