"""Global views: exact running statistics, and sentiment words on top across zoo:toy-lm reviews."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import mechinterp
from mechinterp.attribution import Contrast, TokenAttribution, attribute
from mechinterp.errors import MechinterpError
from mechinterp.explain import GlobalView, aggregate, global_attribution
from mechinterp.tasks import vocab as V


def test_statistics_are_exact():
    gen = np.random.default_rng(0)
    rows = [gen.normal(size=5) for _ in range(30)]
    results = [TokenAttribution(["<bos>", "a", "b", "a", "c"], torch.tensor(r)[None], ["t"], "m") for r in rows]
    view = aggregate(iter(results), "token", normalise="none")
    a = np.array([r[i] for r in rows for i in (1, 3)], dtype=np.float32)
    got = view.get("a")
    assert got["count"] == 60 and view.n_prompts == 30 and "<bos>" not in view.groups
    assert got["mean"] == pytest.approx(a.mean(), abs=1e-6)
    assert got["std"] == pytest.approx(a.std(ddof=1), abs=1e-6)
    lo, hi = stats.t.interval(0.95, len(a) - 1, loc=a.mean(), scale=stats.sem(a))
    assert (got["low"], got["high"]) == (pytest.approx(lo, abs=1e-6), pytest.approx(hi, abs=1e-6))
    shares = aggregate(results, "position")
    assert shares.get("2")["count"] == 30
    total = sum(shares.get(str(p))["mean"] for p in range(1, 5))
    sums = np.mean([r[1:].sum() / np.abs(r[1:]).sum() for r in rows])
    assert total == pytest.approx(sums, abs=1e-6)
    ends = aggregate(results, "position_from_end", normalise="none")
    assert ends.get("-1")["mean"] == pytest.approx(np.mean([r[4] for r in rows]), abs=1e-6)


@pytest.mark.filterwarnings("ignore::mechinterp.attribution.CompletenessWarning")
def test_sentiment_words_matter_most(toy_lm, tmp_path):
    task = mechinterp.tasks.load("sentiment", toy_lm, n=24)
    words = {w for pair in V.SENTIMENT_PAIRS for w in pair}
    view = global_attribution(toy_lm, task, method="integrated_gradients", baseline="pad", n_steps=16)
    top = [g for g, *_ in view.top(5, min_count=3)]
    assert set(top[:3]) <= words, top
    attrs = [attribute(toy_lm, task.clean_tokens[i, : int(task.lengths[i])],
                       Contrast(int(task.correct_tokens[i]), int(task.wrong_tokens[i])),
                       method="integrated_gradients", baseline="pad", n_steps=16, warn=False) for i in range(len(task))]
    again = aggregate(attrs, "token")
    assert again.groups == view.groups and again.mean == pytest.approx(view.mean)
    truth = aggregate(attrs, "ground_truth", ground_truth=task.ground_truth.positions)
    gt, other = truth.get("ground truth"), truth.get("other")
    assert gt["low"] > other["high"]  # the intervals do not overlap
    back = GlobalView.load(view.save(tmp_path / "g.json"))
    assert back.groups == view.groups and view.plot() is not None and "global view" in view.to_html()


def test_bad_input(toy_lm):
    with pytest.raises(MechinterpError, match="group_by"):
        aggregate([], "word")
    with pytest.raises(MechinterpError, match="no results"):
        aggregate([], "token")
    with pytest.raises(MechinterpError, match="ground_truth"):
        aggregate([], "ground_truth")
    with pytest.raises(MechinterpError, match="targets"):
        global_attribution(toy_lm, ["The capital of France is"])
    with pytest.raises(MechinterpError, match="TokenAttribution"):
        aggregate([1.0], "token")
