"""Surrogates: on zoo:toy-lm sentiment (rule known: the polarity of the sentiment words) the tree imitates the model."""

from __future__ import annotations

import warnings

import pytest
import torch

import mechinterp
from mechinterp.errors import MechinterpError
from mechinterp.explain import ActivationFeatures, Surrogate, fit_surrogate, local_surrogate
from mechinterp.tasks import vocab as V

LABELS = ["positive", "negative"]
SENTIMENT_WORDS = {w for pair in V.SENTIMENT_PAIRS for w in pair}


@pytest.fixture(scope="module")
def reviews(toy_lm):
    return mechinterp.tasks.load("sentiment", toy_lm, n=300, split="train")


def test_tree_imitates_the_model_from_sentiment_words(toy_lm, reviews, tmp_path):
    """The bar of issue 20: >= 95% held-out fidelity, the first splits on sentiment words."""
    sur = fit_surrogate(toy_lm, reviews, among=LABELS, max_depth=16)
    assert sur.fidelity_test >= 0.95 and sur.fidelity_train >= 0.95
    assert sur.majority_test < 0.7  # a constant answer would not do
    assert sur.root_feature in SENTIMENT_WORDS
    assert set(sur.split_features[:8]) <= SENTIMENT_WORDS
    assert sur.n_train + sur.n_test == 300 and sur.n_test == 90
    assert sur.rules[0].startswith("if ") and len(sur.rules) == len(sur.split_features) + 1
    # a shallower tree is a shorter decision list: it must lose fidelity (the numbers are measured, not fixed)
    shallow = fit_surrogate(toy_lm, reviews, among=LABELS, max_depth=4)
    assert shallow.fidelity_test < sur.fidelity_test
    back = Surrogate.load(sur.save(tmp_path / "s.json"))
    assert back == sur and back.estimator is None
    assert "fidelity" in sur.to_html() and sur.plot() is not None


def test_sparse_linear_signs(toy_lm, reviews):
    sur = fit_surrogate(toy_lm, reviews, among=LABELS, kind="linear")
    assert sur.fidelity_test >= 0.95
    (row,) = sur.coefficients.values()  # weights of "negative" vs "positive"
    top = list(row)[:20]
    assert set(top) <= SENTIMENT_WORDS
    for pos, neg in V.SENTIMENT_PAIRS:
        if pos in row and neg in row:
            assert row[neg] > 0 > row[pos], (pos, neg)
    assert sur.plot() is not None


def test_group_and_activation_features(toy_lm, reviews):
    pos_words = {p for p, _ in V.SENTIMENT_PAIRS}
    neg_words = {n for _, n in V.SENTIMENT_PAIRS}

    def groups(prompt):
        words = prompt.split()
        return {"has positive word": float(any(w in pos_words for w in words)),
                "has negative word": float(any(w in neg_words for w in words))}

    sur = fit_surrogate(toy_lm, reviews, among=LABELS, features=groups, max_depth=1)
    assert sur.fidelity_test == 1.0 and len(sur.rules) == 2
    # a difference-of-means direction of the last residual stream, one split
    batch = mechinterp.tokenize(toy_lm, reviews.clean_prompts)
    _, cache = toy_lm.run_with_cache(batch.tokens, names_filter="blocks.3.hook_resid_post")
    last = cache["blocks.3.hook_resid_post"][torch.arange(len(batch)), batch.lengths - 1]
    y = torch.tensor(reviews.ground_truth.labels["sentiment"]).bool()
    direction = last[y].mean(0) - last[~y].mean(0)
    sur = fit_surrogate(toy_lm, reviews, among=LABELS, features=ActivationFeatures("blocks.3.hook_resid_post", direction[None],
                                                                                   ["sentiment direction"]), max_depth=1)
    assert sur.fidelity_test >= 0.95 and sur.root_feature == "sentiment direction"


def test_local_surrogate_is_lime(toy_lm):
    from mechinterp.attribution import attribute

    kw = {"n_samples": 64, "replacement": "pad", "seed": 1}
    local = local_surrogate(toy_lm, "The capital of France is", ("Paris", "Rome"), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = attribute(toy_lm, "The capital of France is", ("Paris", "Rome"), method="lime", **kw)
    assert local.method == "lime"
    torch.testing.assert_close(local.scores, direct.scores)


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "forest"}, "kind"), ({"test_fraction": 1.0}, "test_fraction"), ({"max_depth": 0}, "max_depth"),
    ({"features": "words"}, "features"), ({"C": 0}, "C must"),
])
def test_bad_input(toy_lm, reviews, kwargs, match):
    with pytest.raises(MechinterpError, match=match):
        fit_surrogate(toy_lm, reviews.clean_prompts[:20], among=LABELS, **kwargs)


def test_one_answer_or_few_prompts(toy_lm):
    with pytest.raises(MechinterpError, match="one answer"):
        fit_surrogate(toy_lm, ["The capital of France is"] * 12)
    with pytest.raises(MechinterpError, match="at least 10"):
        fit_surrogate(toy_lm, ["The capital of France is"] * 3)
    with pytest.raises(MechinterpError, match="one string"):
        fit_surrogate(toy_lm, "The capital of France is")
