"""Training sets and queries: accepted forms, and bad input as MechinterpErrors that say what to do."""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.hooks import active_hooks
from mechinterp.errors import EmptyInputError, MechinterpError, PromptTooLongError, TokenizationError
from mechinterp.influence import InfluenceIndex, as_queries, as_training_set, influence


def test_training_set_forms_agree(tiny_model):
    texts = ["w1 w2 w3 w4", "w5 w6 w7"]
    a = as_training_set(tiny_model, texts)
    b = as_training_set(tiny_model, [a.tokens[0, : a.lengths[0]].tolist(), a.tokens[1, : a.lengths[1]].tolist()])
    assert torch.equal(a.lengths, b.lengths)
    assert torch.equal(a.tokens * (a.loss_mask.sum(1, keepdim=True) > 0), b.tokens * (b.loss_mask.sum(1, keepdim=True) > 0))
    assert a.loss_mask[1].tolist() == [1, 1, 1, 0] if a.tokens.shape[1] == 5 else True


@pytest.mark.parametrize(
    ("train", "error", "match"),
    [
        ([], EmptyInputError, "empty"),
        ([[5]], EmptyInputError, "fewer than 2"),
        (torch.zeros(2, 40, dtype=torch.long), PromptTooLongError, "n_ctx"),
        (torch.full((2, 3), 999), TokenizationError, "vocabulary"),
        (torch.zeros(2, 3), TokenizationError, "integer token ids"),
        ({"a": 1}, TokenizationError, "list of texts"),
    ],
)
def test_bad_training_sets_raise(tiny_model, train, error, match):
    with pytest.raises(error, match=match):
        as_training_set(tiny_model, train)


def test_query_kinds(tiny_model):
    logits = torch.randn(3, tiny_model.cfg.d_vocab)
    one, pair, metric = as_queries(
        tiny_model, [("w1 w2", "w3"), ("w1 w2", ("w3", "w4")), ("w1 w2", lambda lg: lg[-1, 5])]
    )
    w3, w4 = tiny_model.to_single_token("w3"), tiny_model.to_single_token("w4")
    assert torch.isclose(one.measure(logits), logits[-1].log_softmax(-1)[w3])
    assert torch.isclose(pair.measure(logits), logits[-1, w3] - logits[-1, w4])
    assert torch.isclose(metric.measure(logits), logits[-1, 5])
    assert len(as_queries(tiny_model, ("w1 w2", "w3"))) == 1


def test_bad_queries_raise(tiny_model):
    with pytest.raises(EmptyInputError):
        as_queries(tiny_model, [])
    with pytest.raises(TokenizationError):
        as_queries(tiny_model, [("w1 w2", 10_000)])
    with pytest.raises(MechinterpError, match="pair"):
        as_queries(tiny_model, [("w1 w2", ("w3", "w4", "w5"))])
    bad = as_queries(tiny_model, [("w1 w2", lambda lg: lg[-1])])[0]
    with pytest.raises(MechinterpError, match="scalar"):
        bad.measure(torch.randn(2, tiny_model.cfg.d_vocab))


def test_errors_leave_no_hooks_and_name_the_argument(tiny_model):
    with pytest.raises(MechinterpError, match="method"):
        InfluenceIndex(tiny_model, "tracin")
    with pytest.raises(MechinterpError, match="batch_size"):
        InfluenceIndex(tiny_model, batch_size=0)
    with pytest.raises(MechinterpError, match="only apply"):
        InfluenceIndex(tiny_model, "dot", damping=1.0)
    with pytest.raises(MechinterpError, match="fit"):
        InfluenceIndex(tiny_model).score([("w1 w2", "w3")])
    with pytest.raises(MechinterpError, match="top_k"):
        influence(tiny_model, ["w1 w2 w3"], [("w1 w2", "w3")], method="dot", top_k=0)
    assert active_hooks(tiny_model) == []


def test_influence_on_texts_lists_the_matching_sequence(tiny_model):
    train = ["w1 w2 w3 w4", "w9 w8 w7", "w5 w6 w5 w6"]
    r = influence(tiny_model, train, [("w1 w2 w3", "w4")], method="cosine", top_k=3, projection_dim=None)
    assert r.scores.shape == (1, 3)
    assert set(r.top(0, k=3)) == {0, 1, 2}
    assert r.helpful[0][0]["tokens"][-1] in ("w4", " w4")  # the tokens are shown as strings
    assert abs(r.scores).max() <= 1 + 1e-5  # cosine
    assert active_hooks(tiny_model) == []
