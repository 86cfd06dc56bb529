"""AttentionPatterns: the numbers equal run_with_cache, views carry the right data, plots have labels."""

from __future__ import annotations

import json
import re

import pytest
import torch

from mechinterp.attention import AttentionPatterns, attention_patterns
from mechinterp.errors import EmptyInputError, MechinterpError, PromptTooLongError

PROMPT = "w1 w2 w3 w4 w1 w2"


@pytest.fixture(scope="module")
def pats(tiny_model):
    return attention_patterns(tiny_model, PROMPT)


def _props(html: str) -> dict:
    call = re.search(r"CircuitsVis\.render\(\"[^\"]+\", CircuitsVis\.(\w+), (.*)\);\s*</script>", html, re.S)
    return {"component": call.group(1), **json.loads(call.group(2))}


def test_patterns_equal_run_with_cache(tiny_model, pats):
    _, cache = tiny_model.run_with_cache(tiny_model.to_tokens(PROMPT))
    for layer in range(2):
        torch.testing.assert_close(pats.patterns[layer], cache["pattern", layer][0])
    assert pats.str_tokens == ["<bos>", "w1", "w2", "w3", "w4", "w1", "w2"]
    torch.testing.assert_close(pats.patterns.sum(-1), torch.ones(2, 4, 7))


def test_views_carry_the_patterns(pats):
    layer = _props(pats.view_layer(1).html)
    assert layer["component"] == "AttentionHeads" and layer["attentionHeadNames"] == ["L1H0", "L1H1", "L1H2", "L1H3"]
    torch.testing.assert_close(torch.tensor(layer["attention"]), pats.patterns[1])
    head = _props(pats.view_head(0, 3).html)
    assert head["component"] == "AttentionPattern" and head["tokens"] == pats.str_tokens
    torch.testing.assert_close(torch.tensor(head["attention"]), pats.head(0, 3))
    query = _props(pats.view_query(1, 2, query=4).html)
    assert query["component"] == "ColoredTokens"
    torch.testing.assert_close(torch.tensor(query["values"]), pats.patterns[1, 2, 4])
    mean = _props(pats.view_query(1, None).html)
    torch.testing.assert_close(torch.tensor(mean["values"]), pats.patterns[1].mean(0)[-1])


def test_plot_grid_and_round_trip(pats, tmp_path):
    fig = pats.plot(layers=[1], heads=[0, 2])
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["L1H0", "L1H2"]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == pats.str_tokens
    back = AttentionPatterns.load(pats.save(tmp_path / "p.json"))
    torch.testing.assert_close(back.patterns, pats.patterns)
    assert back.str_tokens == pats.str_tokens and back.layers == pats.layers


def test_layer_subset_and_errors(tiny_model, pats):
    only = attention_patterns(tiny_model, PROMPT, layers=[-1])
    assert only.layers == [1]
    torch.testing.assert_close(only.patterns[0], pats.patterns[1])
    with pytest.raises(MechinterpError, match="not in this result"):
        only.view_layer(0)
    with pytest.raises(MechinterpError, match="Head 9"):
        pats.view_head(0, 9)
    with pytest.raises(MechinterpError, match="layers 0..1"):
        attention_patterns(tiny_model, PROMPT, layers=[5])
    with pytest.raises(MechinterpError, match="one prompt"):
        attention_patterns(tiny_model, [PROMPT, PROMPT])
    with pytest.raises(EmptyInputError):
        attention_patterns(tiny_model, [])
    with pytest.raises(PromptTooLongError):
        attention_patterns(tiny_model, " ".join(["w1"] * 20))
