"""AttentionMap: per-token vectors, serialisation, table, plot and offline HTML."""

from __future__ import annotations

import pytest
import torch

from mechinterp.attention import AttentionMap, attention_rollout, external_references
from mechinterp.errors import MechinterpError


@pytest.fixture(scope="module")
def result(tiny_model):
    return attention_rollout(tiny_model, ["w1 w2 w3 w1", "w4 w5"])


def test_vectors_and_matrices(result):
    assert result.scores(1).shape == (3,) and result.map(0).shape == (5, 5)
    torch.testing.assert_close(result.scores(0), result.map(0)[-1])
    torch.testing.assert_close(result.scores(0).sum(), torch.tensor(1.0))
    df = result.to_dataframe()
    assert len(df) == 5 + 3 and set(df["method"]) == {"rollout"}
    assert df[df.prompt == 1]["score"].tolist() == pytest.approx(result.scores(1).tolist())
    with pytest.raises(MechinterpError, match="2 prompt"):
        result.scores(2)


def test_round_trip_plot_html(result, tmp_path):
    back = AttentionMap.load(result.save(tmp_path / "r.json"))
    torch.testing.assert_close(back.matrix, result.matrix)
    assert back.str_tokens == result.str_tokens and back.parameters == result.parameters
    fig = result.plot(prompt=1)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == result.str_tokens[1]
    html = result.to_html()
    assert "Attention rollout" in html and "data:image/png;base64" in html and external_references(html) == []
    assert result.save(tmp_path / "r.html").read_text().count("prompt 1") == 1
