"""tasks.from_pairs: a task from the user's own prompt pairs, checked, on a word and a BPE tokenizer."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.errors import LeadingSpaceError, MultiTokenAnswerError, ShapeMismatchError, UnknownTokenError

CLEAN = ["The capital of France is", "The capital of Peru is", "In Japan , the capital city is"]
CORRUPTED = ["The capital of Spain is", "The capital of Chile is", "In Kenya , the capital city is"]


@pytest.fixture(scope="module")
def model():
    return mechinterp.load("zoo:toy-lm")


def test_from_pairs_builds_a_task_like_a_registered_one(model):
    task = mechinterp.tasks.from_pairs(
        model, CLEAN, CORRUPTED, answers=["Paris", "Lima", "Tokyo"], wrong_answers=["Madrid", "Santiago", "Nairobi"],
        labels={"country": ["France", "Peru", "Japan"]},
    )
    assert task.name == "custom" and len(task) == 3 and task.meta["source"] == "from_pairs"
    assert torch.equal(task.clean_tokens, model.to_tokens(CLEAN))  # BOS as the model prepends it, padded
    assert task.clean_tokens.shape == task.corrupted_tokens.shape and task.lengths.tolist() == [6, 6, 8]
    assert task.correct_tokens.tolist() == [model.to_single_token(w) for w in ("Paris", "Lima", "Tokyo")]
    assert task.ground_truth.positions == [[4], [4], [2]]  # where clean and corrupted differ: the country
    assert task.ground_truth.labels == {"country": ["France", "Peru", "Japan"]}
    with torch.no_grad():
        clean, corrupted = model(task.clean_tokens), model(task.corrupted_tokens)
    rows = torch.arange(3)
    final = clean[rows, task.lengths - 1]
    torch.testing.assert_close(task.metric(clean), final[rows, task.correct_tokens] - final[rows, task.wrong_tokens])
    assert task.accuracy(clean) == 1.0 and task.accuracy(corrupted) == 0.0
    explicit = mechinterp.tasks.from_pairs(model, CLEAN[:1], CORRUPTED[:1], ["Paris"], ["Madrid"], positions=[[1, 4]])
    assert explicit.ground_truth.positions == [[1, 4]]


def test_from_pairs_errors_say_what_to_do(model):
    with pytest.raises(ShapeMismatchError, match=r"one entry per prompt.*'answers': 2"):
        mechinterp.tasks.from_pairs(model, CLEAN[:1], CORRUPTED[:1], ["Paris", "Lima"], ["Madrid"])
    with pytest.raises(ShapeMismatchError, match=r"Pair 0: .*'the', 'France'"):
        mechinterp.tasks.from_pairs(model, CLEAN[:1], ["The capital of the France is"], ["Paris"], ["Madrid"])
    with pytest.raises(UnknownTokenError, match=r"'Pariss'.*closest known \['Paris'"):
        mechinterp.tasks.from_pairs(model, CLEAN[:1], CORRUPTED[:1], ["Pariss"], ["Madrid"])
    with pytest.raises(UnknownTokenError, match=r"corrupted prompt 0 .*\['Spainn'\] become '<unk>'"):
        mechinterp.tasks.from_pairs(model, CLEAN[:1], ["The capital of Spainn is"], ["Paris"], ["Madrid"])
    with pytest.raises(MultiTokenAnswerError, match="2 tokens"):
        mechinterp.tasks.from_pairs(model, CLEAN[:1], CORRUPTED[:1], ["Paris Lima"], ["Madrid"])
    with pytest.raises(mechinterp.MechinterpError, match="at least one"):
        mechinterp.tasks.from_pairs(model, [], [], [], [])


def test_from_pairs_on_bpe_wants_the_spaced_answer(bpe_model):
    clean, corrupted = ["The capital of France is"], ["The capital of Italy is"]
    task = mechinterp.tasks.from_pairs(bpe_model, clean, corrupted, [" Paris"], [" Rome"])
    assert task.meta["prepend_bos"] is False and task.clean_tokens[0, 0] != bpe_model.tokenizer.bos_token_id
    assert task.ground_truth.positions == [[3]]  # no BOS: " France" is token 3
    with pytest.raises(LeadingSpaceError, match="Pass ' Paris'"):
        mechinterp.tasks.from_pairs(bpe_model, clean, corrupted, ["Paris"], [" Rome"])
