"""The language tasks (ioi, facts, sentiment, greater-than) on zoo:toy-lm and on a tiny model."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.errors import TokenizationError
from mechinterp.tasks import language, vocab

TASKS = list(language.TASKS)
pytestmark = pytest.mark.skipif("toy-lm" not in mechinterp.zoo.names(), reason="zoo:toy-lm is not trained yet")


@pytest.fixture(scope="module")
def model():
    return mechinterp.load("zoo:toy-lm")


@pytest.fixture(scope="module")
def built(model):
    return {name: mechinterp.tasks.load(name, model, n=32, seed=0) for name in TASKS}


def test_registered():
    assert set(TASKS) <= set(mechinterp.tasks.names())


@pytest.mark.parametrize("name", TASKS)
def test_corrupted_aligns_with_clean(built, name):
    task = built[name]
    assert task.clean_tokens.shape == task.corrupted_tokens.shape == (32, int(task.lengths.max()))
    for i in range(len(task)):
        n = int(task.lengths[i])
        assert (task.clean_tokens[i, n:] == 0).all() and (task.corrupted_tokens[i, n:] == 0).all()
        assert (task.corrupted_tokens[i, :n] != 0).all()
        assert (task.clean_tokens[i, :n] != task.corrupted_tokens[i, :n]).any()
    assert len(task.clean_prompts) == len(task.corrupted_prompts) == len(task.correct_answers) == 32


@pytest.mark.parametrize("name", TASKS)
def test_clean_minus_corrupted_metric_is_positive(model, built, name):
    task = built[name]
    with torch.no_grad():
        clean, corrupted = task.metric(model(task.clean_tokens)), task.metric(model(task.corrupted_tokens))
    assert (clean - corrupted).mean() > 0
    assert clean.shape == (32,)


def _word_at(model, task, i, pos):
    return model.to_str_tokens(task.clean_tokens[i])[pos].strip()


def test_ioi_ground_truth(model, built):
    task = built["ioi"]
    labels = task.ground_truth.labels
    for i in range(len(task)):
        io_pos, s2_pos = task.ground_truth.positions[i]
        assert _word_at(model, task, i, io_pos) == labels["io_name"][i] == task.correct_answers[i]
        assert _word_at(model, task, i, s2_pos) == labels["s_name"][i] == task.wrong_answers[i]
        words = task.clean_prompts[i].split()
        assert words.count(labels["io_name"][i]) == 1 and words.count(labels["s_name"][i]) == 2
        first_name = min(words.index(labels["io_name"][i]), words.index(labels["s_name"][i]))
        assert (words[first_name] == labels["s_name"][i]) == labels["subject_first"][i]
    assert set(labels["subject_first"]) == {True, False}
    # ABC: none of the clean names is left in the corrupted prompt
    for i in range(len(task)):
        words = set(task.corrupted_prompts[i].split())
        assert labels["io_name"][i] not in words and labels["s_name"][i] not in words


def test_facts_ground_truth(model, built):
    task = built["facts"]
    capitals = {c: cap for c, cap, _ in vocab.FACTS}
    continents = {c: k for c, _, k in vocab.FACTS}
    for i in range(len(task)):
        country = task.ground_truth.labels["country"][i]
        assert _word_at(model, task, i, task.ground_truth.positions[i][0]) == country
        assert task.correct_answers[i] == capitals[country]
        assert task.ground_truth.labels["continent"][i] == continents[country]
        assert task.wrong_answers[i] != task.correct_answers[i]


def test_sentiment_ground_truth(model, built):
    task = built["sentiment"]
    positive = {p for p, _ in vocab.SENTIMENT_PAIRS}
    negative = {n for _, n in vocab.SENTIMENT_PAIRS}
    for i in range(len(task)):
        polarity = task.ground_truth.labels["polarity"][i]
        words = {_word_at(model, task, i, p) for p in task.ground_truth.positions[i]}
        assert words and words <= (positive if polarity == "positive" else negative)
        assert task.correct_answers[i] == polarity
        others = set(task.clean_prompts[i].split()) - words
        assert not others & (positive | negative)  # every sentiment word is a ground-truth position


def test_greater_than_ground_truth_and_metric(model, built):
    task = built["greater-than"]
    for i in range(len(task)):
        yy = task.ground_truth.labels["yy"][i]
        assert _word_at(model, task, i, task.ground_truth.positions[i][0]) == f"17{yy:02d}"
        assert task.correct_answers[i] == f"{yy + 1:02d}" and task.wrong_answers[i] == f"{yy - 1:02d}"
        assert "1701" in task.corrupted_prompts[i].split()
    with torch.no_grad():
        metric = task.metric(model(task.clean_tokens))
    assert ((metric >= -1) & (metric <= 1)).all()
    fake = torch.zeros(len(task), int(task.lengths.max()), model.cfg.d_vocab)
    rows = torch.arange(len(task))
    fake[rows, task.answer_pos, task.correct_tokens] = 100.0  # all mass on YY + 1
    assert torch.allclose(task.metric(fake), torch.ones(len(task)), atol=1e-4)
    assert task.accuracy(fake) == 1.0
    fake[rows, task.answer_pos, task.wrong_tokens] = 200.0  # all mass on YY - 1
    assert torch.allclose(task.metric(fake), -torch.ones(len(task)), atol=1e-4)
    assert task.accuracy(fake) == 0.0


@pytest.mark.parametrize("name", TASKS)
def test_deterministic_in_seed(model, built, name):
    again = mechinterp.tasks.load(name, model, n=32, seed=0)
    other = mechinterp.tasks.load(name, model, n=32, seed=1)
    assert torch.equal(again.clean_tokens, built[name].clean_tokens)
    assert again.ground_truth.positions == built[name].ground_truth.positions
    assert other.clean_prompts != built[name].clean_prompts


def test_splits_are_disjoint():
    pairs = lambda split: {  # noqa: E731
        frozenset((e.labels["io_name"], e.labels["s_name"])) for e in language.examples("ioi", 300, 0, split)
    }
    assert not pairs("train") & pairs("test")
    for name in ("facts", "sentiment", "greater-than"):
        train = {" ".join(e.clean) for e in language.examples(name, 300, 0, "train")}
        test = {" ".join(e.clean) for e in language.examples(name, 300, 0, "test")}
        assert not train & test, name


def test_tokenizer_without_the_words_raises(tiny_model):
    for name in TASKS:
        with pytest.raises(TokenizationError, match="single-token words"):
            mechinterp.tasks.load(name, tiny_model, n=4)


def test_bad_split_raises(model):
    with pytest.raises(mechinterp.MechinterpError, match="split"):
        mechinterp.tasks.load("ioi", model, n=4, split="validation")


def test_subset_selects_prompts_and_their_ground_truth(model, built):
    from mechinterp.errors import MechinterpError

    task = built["facts"]
    short = int(task.lengths.argmin())
    sub = task.subset([short, 3])
    assert len(sub) == 2 and sub.clean_prompts == [task.clean_prompts[short], task.clean_prompts[3]]
    assert sub.clean_tokens.shape[1] == int(max(task.lengths[short], task.lengths[3]))
    assert sub.ground_truth.positions == [task.ground_truth.positions[short], task.ground_truth.positions[3]]
    assert torch.equal(sub.correct_tokens, task.correct_tokens[[short, 3]])
    with torch.no_grad():  # the subset's metric equals the full task's on those prompts
        full = task.metric(model(task.clean_tokens))[[short, 3]]
        torch.testing.assert_close(sub.metric(model(sub.clean_tokens)), full, atol=1e-4, rtol=1e-4)
    assert task.subset(slice(0, 5)).clean_prompts == task.clean_prompts[:5]
    assert len(task.subset(torch.tensor([1, 2]))) == 2
    with pytest.raises(MechinterpError, match="empty"):
        task.subset([])
    with pytest.raises(MechinterpError, match="out of range"):
        task.subset([len(task)])
    greater = built["greater-than"]  # its metric is per row (YearMetric), so it subsets too
    sub = greater.subset([4, 1])
    with torch.no_grad():
        logits = model(greater.clean_tokens)
        torch.testing.assert_close(sub.metric(logits[[4, 1]]), greater.metric(logits)[[4, 1]])
        assert sub.correct(logits[[4, 1]]).tolist() == greater.correct(logits)[[4, 1]].tolist()
    import dataclasses

    closure = dataclasses.replace(task, metric_fn=lambda logits: logits[:, -1, 0])
    with pytest.raises(MechinterpError, match="closes over"):
        closure.subset([0])
