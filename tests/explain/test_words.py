"""Explanations in words: every number of every sentence is a cited value, and the cited values are the results' own."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.attribution import Contrast, attribute
from mechinterp.errors import MechinterpError
from mechinterp.explain import WordExplanation, explain_in_words
from mechinterp.explain.words import numbers_in
from mechinterp.patching import activation_patch


def _matches(number: str, value: float) -> bool:
    """Whether ``number`` as written (``87.3%``, ``0.738``, ``4``) is ``value`` up to its written rounding."""
    pct = number.endswith("%")
    x = float(number.rstrip("%"))
    decimals = len(number.rstrip("%").split(".")[1]) if "." in number else 0
    target = 100 * value if pct else value
    return abs(x - target) <= 0.5 * 10 ** (-decimals) + 1e-9 + 5e-3 * abs(target) * (not pct and "." in number)


@pytest.fixture(scope="module")
def ioi(toy_lm):
    task = mechinterp.tasks.load("ioi", toy_lm, n=8)
    return task, activation_patch(toy_lm, task, site="resid_pre", by=("layer", "pos"))


def test_every_number_is_cited_and_true(toy_lm, ioi, tmp_path):
    task, patch = ioi
    tokens = task.clean_tokens[0, : int(task.lengths[0])]
    target = Contrast(int(task.correct_tokens[0]), int(task.wrong_tokens[0]))
    attr = attribute(toy_lm, tokens, target, method="integrated_gradients", baseline="pad", warn=False)
    res = explain_in_words(toy_lm, tokens, attribution=attr, patching=patch, faithfulness=0.93)
    assert len(res.sentences) == 6
    for sentence in res.sentences:
        numbers = numbers_in(sentence["text"])
        cited = [res.evidence[k] for k in sentence["cites"] if not isinstance(res.evidence[k], str)]
        assert numbers, sentence
        for number in numbers:
            assert any(_matches(number, float(v)) for v in cited), (number, sentence)
    ev = res.evidence
    # the cited values are the results' own numbers
    with torch.no_grad():
        probs = toy_lm(tokens[None])[0, -1].softmax(-1)
    assert ev["prediction.token"] == task.correct_answers[0]
    assert ev["prediction.prob"] == pytest.approx(float(probs.max()), abs=1e-6)
    mags = attr.scores[0, 1:].abs()
    top = int(mags.argmax())
    assert ev["attribution.top1.position"] == top + 1
    assert ev["attribution.top1.share"] == pytest.approx(float(mags[top] / mags.sum()), abs=1e-6)
    assert ev["attribution.top1.position"] in task.ground_truth.positions[0]  # IG (pad) finds a name
    flat = int(patch.values.abs().argmax())
    assert (ev["patching.max_layer"], ev["patching.max_position"]) == divmod(flat, patch.values.shape[1])
    assert ev["patching.max_effect"] == pytest.approx(float(patch.values.flatten()[flat]))
    assert ev["circuit.faithfulness_fraction"] == 0.93
    back = WordExplanation.load(res.save(tmp_path / "w.json"))
    assert back.text == res.text and "explanation" in res.to_html()


def test_computes_its_own_attribution(toy_lm):
    res = explain_in_words(toy_lm, "The capital of France is", ("Paris", "Rome"), baseline="pad", n_steps=16)
    assert res.evidence["attribution.method"] == "integrated_gradients"
    assert res.evidence["attribution.top1.token"] == "France"
    assert res.evidence["prediction.token"] == "Paris"
    for sentence in res.sentences:
        for number in numbers_in(sentence["text"]):
            assert any(_matches(number, float(res.evidence[k])) for k in sentence["cites"]
                       if not isinstance(res.evidence[k], str))


def test_bad_input(toy_lm, ioi):
    with pytest.raises(MechinterpError, match="top_k"):
        explain_in_words(toy_lm, "The capital of France is", top_k=0)
    with pytest.raises(MechinterpError, match="TokenAttribution"):
        explain_in_words(toy_lm, "The capital of France is", attribution=[1, 2])
    attr = attribute(toy_lm, "The capital of Peru is not", "Lima", method="saliency", warn=False)
    with pytest.raises(MechinterpError, match="tokens but the prompt"):
        explain_in_words(toy_lm, "The capital of France is", attribution=attr)
    task, patch = ioi
    by_layer = activation_patch(toy_lm, task, site="resid_pre", by="layer")
    with pytest.raises(MechinterpError, match="'layer' and 'pos'"):
        explain_in_words(toy_lm, "The capital of France is", method="saliency", patching=by_layer)
