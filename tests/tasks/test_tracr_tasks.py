"""The tracr tasks: shapes, corruptions, metric values on the compiled models, ground truth."""

from __future__ import annotations

import pytest
import torch

import mechinterp
import mechinterp.tasks
from mechinterp.errors import MechinterpError
from mechinterp.tasks.tracr import frac_prevs_targets, reverse_targets

NAMES = ("tracr-reverse", "tracr-frac-prevs", "tracr-prev-tokens")


@pytest.fixture(scope="module")
def models():
    return {name: mechinterp.load(f"zoo:{name}") for name in NAMES}


@pytest.fixture(scope="module")
def tasks(models):
    return {name: mechinterp.tasks.load(name, models[name], n=64, seed=0) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_registered_and_shapes(tasks, models, name):
    task = tasks[name]
    assert name in mechinterp.tasks.names() and len(task) == 64
    assert task.clean_tokens.shape == task.corrupted_tokens.shape == (64, models[name].cfg.n_ctx)
    bos = models[name].tokenizer.bos_token_id
    assert (task.clean_tokens[:, 0] == bos).all() and (task.corrupted_tokens[:, 0] == bos).all()
    assert (task.clean_tokens != task.corrupted_tokens).any(-1).all()  # every pair differs
    assert (task.lengths == task.clean_tokens.shape[1]).all()
    assert torch.equal(models[name].to_tokens(task.clean_prompts), task.clean_tokens)  # texts round-trip
    again = mechinterp.tasks.load(name, models[name], n=64, seed=0)
    assert torch.equal(again.corrupted_tokens, task.corrupted_tokens)  # deterministic in seed


@pytest.mark.parametrize("name", NAMES)
def test_metric_and_accuracy(tasks, models, name):
    task, model = tasks[name], models[name]
    with torch.no_grad():
        clean, corrupted = model(task.clean_tokens), model(task.corrupted_tokens)
    assert torch.allclose(task.metric(clean), torch.ones(64), atol=1e-4)
    low = 0.0 if name == "tracr-frac-prevs" else -1.0
    assert torch.allclose(task.metric(corrupted), torch.full((64,), low), atol=1e-4)
    assert task.accuracy(clean) == 1.0 and task.accuracy(corrupted) == 0.0


def test_reverse_answers_and_ground_truth(tasks):
    task = tasks["tracr-reverse"]
    target = reverse_targets(task.clean_tokens)
    assert torch.equal(task.correct_tokens, task.clean_tokens[:, 1])
    assert (task.correct_tokens != task.wrong_tokens).all()
    assert all(p == [1] for p in task.ground_truth.positions)
    source = task.meta["source_position"]
    for p in range(1, task.clean_tokens.shape[1]):
        assert torch.equal(target[:, p], task.clean_tokens[:, source[p]])
    assert task.ground_truth.circuit == mechinterp.zoo.read_json("tracr-reverse", "circuit.json")


def test_frac_prevs_answers_and_ground_truth(tasks):
    task = tasks["tracr-frac-prevs"]
    x = task.meta["x_token"]
    assert torch.equal(task.meta["targets"], frac_prevs_targets(task.clean_tokens, x))
    for row, positions, answer in zip(
        task.clean_tokens.tolist(), task.ground_truth.positions, task.correct_answers
    ):
        assert positions == [p for p, t in enumerate(row) if t == x]
        assert abs(float(answer) - len(positions) / (len(row) - 1)) < 1e-3
    assert task.ground_truth.labels["is_x"][0] == [int(t == x) for t in task.clean_tokens[0].tolist()]
    assert task.ground_truth.circuit["edges"]


def test_bad_input(models):
    with pytest.raises(MechinterpError, match="seq_len"):
        mechinterp.tasks.load("tracr-reverse", models["tracr-reverse"], n=4, seq_len=6)
    with pytest.raises(MechinterpError, match="d_vocab_out"):
        mechinterp.tasks.load("tracr-reverse", models["tracr-frac-prevs"], n=4)
    short = mechinterp.tasks.load("tracr-reverse", models["tracr-reverse"], n=4, seq_len=3)
    assert short.clean_tokens.shape == (4, 4)


def test_prev_tokens_answers_and_ground_truth(tasks, models):
    task = tasks["tracr-prev-tokens"]
    tokens, answered = task.clean_tokens, task.meta["answered"]
    assert answered.tolist() == [False] * 3 + [True] * (tokens.shape[1] - 3)
    assert torch.equal(task.meta["targets"][:, answered], tokens[:, 1:-2])  # position p answers token p - 2
    assert torch.equal(task.correct_tokens, tokens[:, -3]) and (task.correct_tokens != task.wrong_tokens).all()
    assert all(p == [tokens.shape[1] - 3] for p in task.ground_truth.positions)
    assert task.ground_truth.circuit == mechinterp.zoo.read_json("tracr-prev-tokens", "circuit.json")
    # Only the copied inputs (1 .. seq_len - 2) are drawn to differ; the last two may agree.
    assert (task.clean_tokens[:, 1:-2] != task.corrupted_tokens[:, 1:-2]).any(-1).all()
    with pytest.raises(MechinterpError, match="seq_len >= 3"):
        mechinterp.tasks.load("tracr-prev-tokens", models["tracr-prev-tokens"], n=4, seq_len=2)
