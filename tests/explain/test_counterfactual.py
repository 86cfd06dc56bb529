"""Counterfactuals: ground truth on zoo:toy-lm (the edit the mechanism predicts), measured numbers, constraints."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.core.hooks import active_hooks
from mechinterp.errors import MechinterpError
from mechinterp.explain import Counterfactual, counterfactual

LABELS = ["positive", "negative"]
#: the plausibility recipe of docs/howto/explain.md: fluent edits only
PLAUSIBLE = {"max_fluency_drop": 0.5, "fluent_pool": 50}


def _rates(model, name, n, **options):
    task = mechinterp.tasks.load(name, model, n=n)
    hits = one = 0
    for i in range(len(task)):
        cf = counterfactual(model, task.clean_tokens[i, : int(task.lengths[i])], **options)
        hits += cf.success and bool(set(cf.positions) & set(task.ground_truth.positions[i]))
        one += cf.success and cf.n_edits == 1
    return hits / len(task), one / len(task)


@pytest.mark.parametrize("name, options", [("facts", {}), ("ioi", {}), ("sentiment", {"among": LABELS, **PLAUSIBLE})])
def test_edits_the_causal_token(toy_lm, name, options):
    """The bar of issue 20: the flip edits the country / a name / a sentiment word in >= 90% of prompts."""
    hit, one = _rates(toy_lm, name, 10, **options)
    assert hit >= 0.9, (name, hit)
    assert one >= 0.5, (name, one)


def test_reported_numbers_are_measured(toy_lm):
    cf = counterfactual(toy_lm, "The capital of France is", target="Rome")
    assert cf.success and cf.target == "Rome" and cf.new_prediction == "Rome"
    assert cf.edits[0]["old"] == "France" and cf.edits[0]["position"] == 4
    edited = toy_lm.to_tokens(cf.edited_text)[0]
    assert [toy_lm.to_string(t) for t in edited] == cf.edited_tokens
    with torch.no_grad():
        logits = toy_lm(edited[None])[0, -1]
        logp = toy_lm(edited[None]).log_softmax(-1)[0, :-1].gather(-1, edited[1:, None]).mean()
    rome, top = toy_lm.to_single_token("Rome"), logits.clone()
    top[rome] = -float("inf")
    assert cf.margin_after == pytest.approx(float(top.max() - logits[rome]), abs=1e-4)
    assert cf.new_prob == pytest.approx(float(logits.softmax(-1)[rome]), abs=1e-5)
    assert cf.fluency_after == pytest.approx(float(logp), abs=1e-4)
    assert cf.margin_before > 0 > cf.margin_after
    # one state per depth, top_k replacements per editable position (4 words after BOS), plus the prompt
    assert cf.n_backward == 1 and cf.n_forward == 1 + 4 * 5
    assert active_hooks(toy_lm) == []


def test_constraints(toy_lm):
    prompt = "The capital of France is"
    cf = counterfactual(toy_lm, prompt, target="Rome", fixed=["France"], max_edits=2)
    assert 4 not in cf.positions
    allowed = ["Spain", "Peru", "Japan"]
    cf = counterfactual(toy_lm, prompt, allowed=allowed)
    assert cf.success and all(e["new"] in allowed for e in cf.edits)
    assert cf.new_prediction in ("Madrid", "Lima", "Tokyo")
    cf = counterfactual(toy_lm, prompt, target="Rome", deletions=True, allowed=["the"])
    assert all(e["kind"] == "delete" or e["new"] == "the" for e in cf.edits)


def test_label_set_and_roundtrip(toy_lm, tmp_path):
    cf = counterfactual(toy_lm, "Review : the room was excellent . Sentiment :", among=LABELS, **PLAUSIBLE)
    assert cf.success and cf.positions == [6] and cf.new_prediction == "negative"
    assert cf.among == LABELS
    back = Counterfactual.load(cf.save(tmp_path / "cf.json"))
    assert back == cf
    assert "excellent" in cf.to_html() and cf.plot() is not None


@pytest.mark.parametrize("kwargs, match", [
    ({"target": "Paris"}, "already predicts"),
    ({"target": "Rome", "among": ["Paris", "Madrid"]}, "not in among"),
    ({"max_edits": 0}, "max_edits"),
    ({"fixed": [1, 2, 3, 4, 5]}, "nothing left"),
    ({"fixed": ["Germany"]}, "not in the prompt"),
    ({"allowed": []}, "allowed is empty"),
    ({"select": "best"}, "select"),
    ({"max_fluency_drop": -1.0}, "max_fluency_drop"),
])
def test_bad_input(toy_lm, kwargs, match):
    with pytest.raises(MechinterpError, match=match):
        counterfactual(toy_lm, "The capital of France is", **kwargs)
    assert active_hooks(toy_lm) == []
    with pytest.raises(MechinterpError):
        counterfactual(toy_lm, ["a", "b"])
