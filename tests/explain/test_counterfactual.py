"""Counterfactuals: ground truth on zoo:toy-lm (the edit the mechanism predicts), measured numbers, constraints."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.core.hooks import active_hooks
from mechinterp.errors import MechinterpError
from mechinterp.explain import Counterfactual, counterfactual

LABELS = ["positive", "negative"]


def _rates(model, name, n, **options):
    task = mechinterp.tasks.load(name, model, n=n)
    hits = one = 0
    for i in range(len(task)):
        cf = counterfactual(model, task.clean_tokens[i, : int(task.lengths[i])], **options)
        hits += cf.success and bool(set(cf.positions) & set(task.ground_truth.positions[i]))
        one += cf.success and cf.n_edits == 1
    return hits / len(task), one / len(task)


@pytest.mark.parametrize("name, options", [("facts", {}), ("ioi", {}), ("sentiment", {"among": LABELS})])
def test_edits_the_causal_token(toy_lm, name, options):
    """The bar of issue 20, with the default search: the flip edits the country / a name / a
    sentiment word in >= 90% of prompts, with one edit in most (``among`` is the task's label
    set, the question asked, not a search option). Measured on 100 test prompts: 100%, 100%,
    99%; one edit in 100%, 100%, 80%."""
    hit, one = _rates(toy_lm, name, 20, **options)
    assert hit >= 0.9, (name, hit)
    assert one >= 0.5, (name, one)


def test_plausible_edits_beat_fewer_edits_that_break_the_prompt(toy_lm):
    """Two positive words need two edits; plain HotFlip (no plausibility filter) flips the label
    with one edit that breaks the review instead (the word after "Review :" becomes "negative")."""
    prompt = "Review : i think the show was delicious and the music was great . Sentiment :"
    cf = counterfactual(toy_lm, prompt, among=LABELS)
    assert cf.success and cf.positions == [8, 13]  # "delicious" and "great"
    assert cf.fluency_after > cf.fluency_before - 0.5
    plain = counterfactual(toy_lm, prompt, among=LABELS, max_token_drop=None)
    assert plain.success and plain.n_edits == 1 and plain.positions[0] not in (8, 13)
    assert plain.fluency_after < cf.fluency_after - 0.5


def test_every_replacement_is_plausible_under_the_model(toy_lm):
    """log p(new | prefix) >= log p(old | prefix) - max_token_drop, with the prefix as it was when
    the edit was made (the original one, or with the earlier positions' edits applied)."""
    task = mechinterp.tasks.load("sentiment", toy_lm, n=6)
    for i in range(len(task)):
        tokens = task.clean_tokens[i, : int(task.lengths[i])]
        cf = counterfactual(toy_lm, tokens, among=LABELS, max_token_drop=1.5)
        assert cf.success and cf.edits
        edited = tokens.clone()
        for e in cf.edits:
            edited[e["position"]] = e["new_id"]
        for e in cf.edits:
            q, ok = e["position"], []
            for prefix in (tokens[:q], edited[:q]):
                with torch.no_grad():
                    lp = toy_lm(prefix[None]).log_softmax(-1)[0, -1]
                ok.append(float(lp[e["new_id"]]) >= float(lp[e["old_id"]]) - 1.5 - 1e-4)
            assert any(ok), e


def test_reported_numbers_are_measured(toy_lm):
    cf = counterfactual(toy_lm, "The capital of France is", target="Rome")
    assert cf.success and cf.target == "Rome" and cf.new_prediction == "Rome"
    assert cf.edits[0]["old"] == "France" and cf.edits[0]["new"] == "Italy" and cf.edits[0]["position"] == 4
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
    # one state per depth; per editable position (the 5 words after BOS) at most top_k=4 replacements,
    # those within 3 nats of the original token's log-prob; plus the prompt itself
    tokens = toy_lm.to_tokens("The capital of France is")[0]
    with torch.no_grad():
        lp = toy_lm(tokens[None]).log_softmax(-1)[0, :-1]  # [pos-1, d_vocab]: log p(v | prefix)
    own = lp.gather(-1, tokens[1:, None])
    plausible = (lp >= own - 3.0).sum(-1) - 1  # the token itself excluded (no special token is this likely)
    assert cf.n_backward == 1 and cf.n_forward == 1 + int(plausible.clamp(max=4).sum())
    assert active_hooks(toy_lm) == []


def test_constraints(toy_lm):
    prompt = "The capital of France is"
    cf = counterfactual(toy_lm, prompt, target="Rome", fixed=["France"], max_edits=2)
    assert 4 not in cf.positions
    allowed = ["Spain", "Peru", "Japan"]
    cf = counterfactual(toy_lm, prompt, allowed=allowed)
    assert cf.success and all(e["new"] in allowed for e in cf.edits)
    assert cf.new_prediction in ("Madrid", "Lima", "Tokyo")
    cf = counterfactual(toy_lm, prompt, target="Rome", edits=("substitute", "delete"), allowed=["the"])
    assert all(e["kind"] == "delete" or e["new"] == "the" for e in cf.edits)


def test_label_set_and_roundtrip(toy_lm, tmp_path):
    cf = counterfactual(toy_lm, "Review : the room was excellent . Sentiment :", among=LABELS)
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
    ({"max_token_drop": -0.5}, "max_token_drop"),
])
def test_bad_input(toy_lm, kwargs, match):
    with pytest.raises(MechinterpError, match=match):
        counterfactual(toy_lm, "The capital of France is", **kwargs)
    assert active_hooks(toy_lm) == []
    with pytest.raises(MechinterpError):
        counterfactual(toy_lm, ["a", "b"])
