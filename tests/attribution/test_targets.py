"""Targets: next token, contrast, label, continuation (teacher-forced), generation, metric; bad input."""

from __future__ import annotations

import pytest
import torch

from mechinterp.attribution import Continuation, Contrast, Generate, Label, MetricTarget, NextToken, as_target, attribute
from mechinterp.attribution.base import prepare_prompt
from mechinterp.attribution.forward import forward_scores
from mechinterp.errors import EmptyInputError, MechinterpError, MultiTokenAnswerError, PromptTooLongError

PROMPT = "w1 w2 w3"


def _scores(model, target):
    prep = prepare_prompt(model, PROMPT, target)
    with torch.no_grad():
        return forward_scores(model, prep.batch_tokens, prep.target)[0], prep


def test_next_token_contrast_label_and_metric_read_the_logits(tiny_model):
    logits = tiny_model(tiny_model.to_tokens(PROMPT))[0, -1].detach()
    a, b, c = (int(tiny_model.to_single_token(w)) for w in ("w4", "w5", "w6"))
    torch.testing.assert_close(_scores(tiny_model, NextToken("w4"))[0], logits[[a]])
    torch.testing.assert_close(_scores(tiny_model, NextToken("w4", kind="prob"))[0], logits.softmax(-1)[[a]])
    torch.testing.assert_close(_scores(tiny_model, ("w4", "w5"))[0], (logits[a] - logits[b]).view(1))
    torch.testing.assert_close(_scores(tiny_model, Label("w5", ["w4", "w5", "w6"]))[0],
                               logits[[a, b, c]].log_softmax(-1)[[1]])
    metric = MetricTarget(lambda lg: lg[:, -1, a] * 2, name="twice")
    torch.testing.assert_close(_scores(tiny_model, metric)[0], 2 * logits[[a]])


def test_continuation_is_teacher_forced_in_one_pass(tiny_model):
    scores, prep = _scores(tiny_model, Continuation("w7 w8"))
    full = tiny_model(tiny_model.to_tokens(PROMPT + " w7 w8"))[0].log_softmax(-1).detach()
    ids = [int(tiny_model.to_single_token(w)) for w in ("w7", "w8")]
    torch.testing.assert_close(scores, torch.stack([full[3, ids[0]], full[4, ids[1]]]))
    assert prep.n_prompt == 4 and len(prep.tokens) == 6


def test_generate_uses_greedy_tokens(tiny_model):
    prep = prepare_prompt(tiny_model, PROMPT, Generate(2))
    first = int(tiny_model(tiny_model.to_tokens(PROMPT))[0, -1].argmax())
    assert int(prep.tokens[4]) == first and len(prep.target.labels) == 2
    res = attribute(tiny_model, PROMPT, Generate(3), method="ig", n_steps=16, warn=False)
    assert res.scores.shape == (3, 4) and max(res.metadata["relative_delta"]) < 0.01


def test_bad_targets_and_prompts(tiny_model):
    with pytest.raises(MultiTokenAnswerError, match="multi-token target"):
        attribute(tiny_model, PROMPT, "w4 w5")
    with pytest.raises(EmptyInputError):
        attribute(tiny_model, "   ", "w4")
    with pytest.raises(PromptTooLongError):
        attribute(tiny_model, " ".join(["w1"] * 20), "w4")
    with pytest.raises(PromptTooLongError):
        attribute(tiny_model, " ".join(["w1"] * 10), Continuation(" ".join(["w2"] * 8)))
    with pytest.raises(MechinterpError, match="Cannot use"):
        as_target(3.5)
    with pytest.raises(MechinterpError, match="not in the label set"):
        attribute(tiny_model, PROMPT, Label("w9", ["w4", "w5"]))
    with pytest.raises(MechinterpError, match="Unknown attribution method"):
        attribute(tiny_model, PROMPT, "w4", method="magic")
    with pytest.raises(MechinterpError, match="Valid options"):
        attribute(tiny_model, PROMPT, "w4", method="ig", steps=3)
    with pytest.raises(MechinterpError):
        attribute(tiny_model, PROMPT, Contrast("w4", "w5", kind="odds"))
