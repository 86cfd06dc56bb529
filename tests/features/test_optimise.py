"""Input optimisation: tracr's frac_prevs is maximised by all-"x" inputs; toy-lm's sentiment probe by sentiment words."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import MechinterpError
from mechinterp.features import OptimisedInput, dimension, direction, max_activating_examples, optimise_input
from mechinterp.tasks import vocab


@pytest.fixture(scope="module")
def tracr():
    return mechinterp.load("zoo:tracr-frac-prevs")


def test_frac_prevs_optimum_is_all_x_and_matches_the_best_dataset_example(tracr):
    """resid_post 1, dimension 0 (frac_prevs) read at the last of 5 tokens is 1 only for "x x x x x"."""
    target = dimension(tracr, "resid_post", 1, 0)
    reference = max_activating_examples(tracr, ["x w", "w x y z", "y x x z"], target, k=3)
    ids = tracr.to_tokens("w x y z", prepend_bos=False)[0].tolist()
    res = optimise_input(tracr, target, length=5, steps=20, allowed=ids, reference=reference)
    assert res.optimised_tokens == ["x"] * 5
    assert res.value == pytest.approx(1.0, abs=1e-4)
    assert res.value >= res.best_dataset_value - 1e-4
    assert res.history == sorted(res.history)  # never worse
    assert_no_hooks(tracr)


def test_sentiment_probe_direction_is_maximised_by_sentiment_words(toy_lm, sentiment_split):
    """The mass-mean sentiment probe at resid_post 3 (last token): the word optimised into
    "Review : the food was _ . Sentiment :" is a positive word along +probe, a negative one along -probe."""
    from mechinterp import probes

    pos, neg, _ = sentiment_split
    data = probes.collect_activations(toy_lm, pos + neg, [1] * len(pos) + [0] * len(neg), layers=3)
    probe = probes.MassMeanProbe().fit(data.x(3).numpy(), data.y)
    w = torch.as_tensor(probe.means_[1] - probe.means_[0]).float()
    positive = {p for p, _ in vocab.SENTIMENT_PAIRS}
    negative = {n for _, n in vocab.SENTIMENT_PAIRS}
    for sign, words in ((1.0, positive), (-1.0, negative)):
        target = direction(toy_lm, "resid_post", 3, sign * w, "sentiment probe")
        res = optimise_input(toy_lm, target, length=1, prefix="Review : the food was", suffix=". Sentiment :", steps=30,
                             top_k=16, n_candidates=32)
        assert res.optimised_tokens[0] in words, (sign, res.optimised_tokens)
    assert_no_hooks(toy_lm)


def test_round_trip_and_bad_input(tracr, tmp_path):
    target = dimension(tracr, "resid_post", 1, 0)
    res = optimise_input(tracr, target, length=2, steps=3)
    back = OptimisedInput.load(res.save(tmp_path / "opt.json"))
    assert back.tokens == res.tokens and back.value == res.value
    assert "Optimised input" in res.to_html()
    res.plot()
    with pytest.raises(MechinterpError, match="length"):
        optimise_input(tracr, target, length=0)
    with pytest.raises(MechinterpError, match="n_ctx"):
        optimise_input(tracr, target, length=9)
    with pytest.raises(MechinterpError, match="allowed"):
        optimise_input(tracr, target, allowed=[])
    assert_no_hooks(tracr)
