"""Task accuracy per prompt, evaluate, solved() and tasks.load(only_solved=True)."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.tasks import base

FACTS = [("France", "Paris", "Spain"), ("Peru", "Lima", "Chile"), ("Japan", "Tokyo", "Kenya"), ("Italy", "Rome", "Egypt")]
CAPITAL = {"Spain": "Madrid", "Chile": "Santiago", "Kenya": "Nairobi", "Egypt": "Cairo"}


@pytest.fixture(scope="module")
def model():
    return mechinterp.load("zoo:toy-lm")


def _alternating(model, n=8, seed=0):
    """Fact prompts whose 'correct' answer is right for even i and a wrong capital for odd i."""
    rows = [FACTS[(seed + i) % len(FACTS)] for i in range(n)]
    answers = [cap if i % 2 == 0 else CAPITAL[other] for i, (_, cap, other) in enumerate(rows)]
    return mechinterp.tasks.from_pairs(
        model, [f"The capital of {c} is" for c, _, _ in rows], [f"The capital of {o} is" for _, _, o in rows],
        answers, [CAPITAL[o] if i % 2 == 0 else cap for i, (_, cap, o) in enumerate(rows)], name="alternating",
    )


@pytest.fixture
def registered():
    base.register("alternating")(_alternating)
    yield
    del base._REGISTRY["alternating"]


def test_correct_accuracy_and_evaluate(model):
    task = _alternating(model, n=6)
    with torch.no_grad():
        logits = model(task.clean_tokens)
    assert task.correct(logits).tolist() == [True, False] * 3
    assert task.accuracy(logits) == 0.5
    out = task.evaluate(model, batch_size=4)  # batches of 4 then 2: the same as one pass
    assert out["n"] == 6 and out["accuracy"] == 0.5 and out["correct"] == [True, False] * 3
    assert out["metric_mean"] == pytest.approx(task.metric(logits).mean().item(), abs=1e-4)
    with torch.no_grad():
        corrupted = model(task.corrupted_tokens)
    assert out["corrupted_metric_mean"] == pytest.approx(task.metric(corrupted).mean().item(), abs=1e-4)


def test_solved_keeps_the_right_prompts(model):
    task = _alternating(model, n=6)
    solved = task.solved(model)
    assert solved.clean_prompts == task.clean_prompts[0::2]
    assert solved.correct_answers == task.correct_answers[0::2]
    assert solved.meta["solved"] == {"kept": 3, "dropped": 3, "accuracy": 0.5}
    assert solved.evaluate(model)["accuracy"] == 1.0
    with pytest.raises(mechinterp.MechinterpError, match="solves none"):
        _alternating(model, n=2).subset([1]).solved(model)


def test_load_only_solved_draws_more_candidates(model, registered):
    seen = []
    with model.hooks(fwd_hooks=[("hook_embed", lambda act, hook: seen.append(act.shape[0]))]):
        task = mechinterp.tasks.load("alternating", model, n=4, only_solved=True)
    assert sum(seen) == 8  # 4 candidates, then only the 4 new ones of the 8 (the first 4 are the same)
    # candidates 0..7 were needed: the solved ones are 0 2 4 6, the 4th solved is candidate 6
    assert task.meta["solved"] == {"kept": 4, "dropped": 3, "candidates": 7, "accuracy": 4 / 7}
    assert task.clean_prompts == _alternating(model, n=8).clean_prompts[0::2]
    # a generator that can make at most 8 prompts (4 solved): fewer than asked, with a warning
    base._REGISTRY["alternating"] = lambda model, n, seed: _alternating(model, min(n, 8), seed)
    with pytest.warns(UserWarning, match="Only 4 of 8 'alternating' candidates"):
        few = mechinterp.tasks.load("alternating", model, n=5, only_solved=True)
    assert len(few) == 4 and few.meta["solved"]["kept"] == 4


def test_only_solved_on_a_solved_task_is_the_plain_task(model):
    plain = mechinterp.tasks.load("ioi", model, n=16)
    solved = mechinterp.tasks.load("ioi", model, n=16, only_solved=True)
    assert solved.clean_prompts == plain.clean_prompts and torch.equal(solved.clean_tokens, plain.clean_tokens)
    assert solved.meta["solved"] == {"kept": 16, "dropped": 0, "candidates": 16, "accuracy": 1.0}


def test_greater_than_solved_subsets_its_metric(model):
    task = mechinterp.tasks.load("greater-than", model, n=8)
    solved = task.solved(model)  # toy-lm solves all: the same task, with the record
    assert len(solved) == 8 and solved.meta["solved"]["dropped"] == 0
    out = task.evaluate(model, batch_size=3)
    with torch.no_grad():
        assert out["metric_mean"] == pytest.approx(task.metric(model(task.clean_tokens)).mean().item(), abs=1e-5)
