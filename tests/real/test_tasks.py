"""The tasks on SmolLM2-135M-Instruct: BPE tokenizer, no BOS, answers with their leading space.

Every task builds a valid prompt set (same token length clean/corrupted, single-token answers,
ground-truth positions on the right tokens, text written as ordinary text) and the model's
accuracy is reported; IOI is solved well (measured 0.95 top-1, logit difference 5.2 on 20
prompts), and ``only_solved`` keeps only prompts the model gets right.
"""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.errors import LeadingSpaceError, MultiTokenAnswerError
from mechinterp.tasks import language

pytestmark = pytest.mark.real

TASKS = ["ioi", "facts", "greater-than", "sentiment", "induction"]


def _key_tokens(task, i):
    labels = task.ground_truth.labels
    if task.name == "ioi":
        return [" " + labels["io_name"][i], " " + labels["s_name"][i]]
    if task.name == "facts":
        return [" " + labels["country"][i]]
    if task.name == "greater-than":
        return [str(labels["yy"][i] // 10)]  # SmolLM2 writes numbers digit by digit
    if task.name == "induction":  # A[-1] and A[-2] in the first copy: the answer and the current token
        return [task.correct_answers[i], None]
    return None


@pytest.mark.parametrize("name", TASKS)
def test_task_builds_a_valid_set_and_reports_accuracy(smollm2, name):
    task = mechinterp.tasks.load(name, smollm2, n=6, seed=0)
    assert smollm2.cfg.default_prepend_bos is False and task.clean_tokens.shape == task.corrupted_tokens.shape
    for i in range(len(task)):
        n = int(task.lengths[i])
        assert smollm2.to_tokens(task.corrupted_prompts[i]).shape[1] == n  # same length, no BOS
        if name != "induction":  # induction draws token ids; its text is only for display
            assert smollm2.to_tokens(task.clean_prompts[i])[0].tolist() == task.clean_tokens[i, :n].tolist()
            assert " ," not in task.clean_prompts[i] and " ." not in task.clean_prompts[i]
        tokens = smollm2.to_str_tokens(task.clean_tokens[i, :n])
        want = _key_tokens(task, i)
        if want is not None:
            got = [tokens[p] for p in task.ground_truth.positions[i]]
            assert [g for g, w in zip(got, want) if w is not None] == [w for w in want if w is not None]
    for answers, ids in ((task.correct_answers, task.correct_tokens), (task.wrong_answers, task.wrong_tokens)):
        assert [smollm2.to_single_token(a) for a in answers] == ids.tolist()
    out = task.evaluate(smollm2)
    assert 0.0 <= out["accuracy"] <= 1.0 and len(out["correct"]) == 6
    # the clean prompts favour the right answer more than the corrupted ones do, on every task
    assert out["metric_mean"] > out["corrupted_metric_mean"]


def test_ioi_is_solved(smollm2):
    task = mechinterp.tasks.load("ioi", smollm2, n=20, seed=0)
    with torch.no_grad():
        logits = smollm2(task.clean_tokens)
    assert task.accuracy(logits) >= 0.8 and task.metric(logits).mean() > 3.0  # measured: 0.95 and 5.16


def test_facts_only_solved(smollm2):
    task = mechinterp.tasks.load("facts", smollm2, n=6, seed=0, only_solved=True)
    info = task.meta["solved"]
    assert len(task) == info["kept"] == 6 and info["kept"] + info["dropped"] == info["candidates"]
    assert info["dropped"] > 0  # SmolLM2-135M misses some capitals (" the" is often its top guess)
    assert task.evaluate(smollm2)["accuracy"] == 1.0
    assert "Tegucigalpa" in task.meta["dropped_words"]  # several tokens for this tokenizer


def test_answer_forms_on_a_bpe_tokenizer(smollm2):
    assert mechinterp.answer_tokens(smollm2, " Paris").tolist() == [smollm2.to_single_token(" Paris")]
    with pytest.raises(LeadingSpaceError, match="Pass ' Paris'"):
        mechinterp.answer_tokens(smollm2, "Paris")
    with pytest.raises(MultiTokenAnswerError, match=r"\[' T', 'eg', 'uc'"):
        mechinterp.answer_tokens(smollm2, " Tegucigalpa")
    task = mechinterp.tasks.from_pairs(
        smollm2, ["The capital of France is"], ["The capital of Italy is"], [" Paris"], [" Rome"]
    )
    assert task.ground_truth.positions == [[3]]  # " France": no BOS in front
    with torch.no_grad():
        assert task.accuracy(smollm2(task.clean_tokens)) == 1.0


def test_greater_than_uses_digits(smollm2):
    task = mechinterp.tasks.load("greater-than", smollm2, n=4, seed=0)
    assert task.meta["year_mode"] == "digits"
    assert set(task.ground_truth.labels["yy"]) <= set(language.DIGIT_YEARS)
