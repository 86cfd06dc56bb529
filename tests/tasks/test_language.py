"""The language tasks (ioi, facts, sentiment, greater-than) on zoo:toy-lm and on a tiny model."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.errors import TokenizationError
from mechinterp.tasks import language, vocab

TASKS = list(language.TASKS)

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


# --- a sub-word (byte-level BPE) tokenizer, with and without BOS -----------------------------


@pytest.fixture(scope="module")
def bpe_tasks(bpe_model):
    import copy

    with_bos = copy.deepcopy(bpe_model)
    with_bos.cfg.default_prepend_bos = True
    return {
        bos: (m, {name: mechinterp.tasks.load(name, m, n=24, seed=0) for name in TASKS})
        for bos, m in ((False, bpe_model), (True, with_bos))
    }


def _key_word(task, i):
    """What the token at each ground-truth position must be."""
    labels = task.ground_truth.labels
    if task.name == "ioi":
        return [" " + labels["io_name"][i], " " + labels["s_name"][i]]
    if task.name == "facts":
        return [" " + labels["country"][i]]
    if task.name == "greater-than":  # digit mode: the tens digit of the start year
        return [str(labels["yy"][i] // 10)]
    return None


@pytest.mark.parametrize("bos", [False, True])
@pytest.mark.parametrize("name", TASKS)
def test_bpe_prompts_positions_and_answers(bpe_tasks, name, bos):
    model, tasks = bpe_tasks[bos]
    task = tasks[name]
    assert len(task) == 24 and task.meta["tokenizer_kind"] == "subword" and task.meta["prepend_bos"] is bos
    assert task.clean_tokens.shape == task.corrupted_tokens.shape
    bos_id = model.tokenizer.bos_token_id
    assert bool((task.clean_tokens[:, 0] == bos_id).all()) is bos and bool((task.corrupted_tokens[:, 0] == bos_id).all()) is bos
    for i in range(len(task)):
        prompt = task.clean_prompts[i]
        assert " ," not in prompt and " ." not in prompt and " :" not in prompt  # written as text, not zoo style
        n = int(task.lengths[i])
        assert model.to_tokens(prompt)[0].tolist() == task.clean_tokens[i, :n].tolist()
        assert model.to_tokens(task.corrupted_prompts[i])[0].tolist() == task.corrupted_tokens[i, :n].tolist()
        tokens = model.to_str_tokens(task.clean_tokens[i, :n])
        want = _key_word(task, i)
        got = [tokens[p] for p in task.ground_truth.positions[i]]
        if want is not None:
            assert got == want
        else:  # sentiment: every ground-truth token is a sentiment word
            words = {w for pair in vocab.SENTIMENT_PAIRS for w in pair}
            assert got and all(t.strip() in words for t in got)
    # answers are single tokens in the form the model continues with
    if name != "greater-than":
        assert all(a.startswith(" ") for a in task.correct_answers + task.wrong_answers)
    for answers, ids in ((task.correct_answers, task.correct_tokens), (task.wrong_answers, task.wrong_tokens)):
        assert [model.to_single_token(a) for a in answers] == ids.tolist()


@pytest.mark.parametrize("name", TASKS)
def test_bpe_bos_shifts_positions_by_one(bpe_tasks, name):
    plain, bos = bpe_tasks[False][1][name], bpe_tasks[True][1][name]
    assert plain.clean_prompts == bos.clean_prompts
    assert [[p + 1 for p in row] for row in plain.ground_truth.positions] == bos.ground_truth.positions
    assert torch.equal(bos.lengths, plain.lengths + 1)


def test_bpe_meta_says_what_was_filtered(bpe_model, bpe_tasks):
    facts = bpe_tasks[False][1]["facts"]
    dropped = facts.meta["dropped_words"]
    multi = [w for c, cap, _ in vocab.FACTS for w in (c, cap) if len(bpe_model.to_tokens(" " + w, prepend_bos=False)[0]) > 1]
    assert multi and sorted(dropped) == sorted(multi)  # exactly the words that are not one token
    kept = {c for c, cap, _ in vocab.FACTS if c not in multi and cap not in multi}
    assert set(facts.ground_truth.labels["country"]) <= kept
    assert str(len(kept)) + f" of {len(vocab.FACTS)} countries kept" in facts.meta["filtered"][0]
    greater = bpe_tasks[False][1]["greater-than"]
    assert greater.meta["year_mode"] == "digits" and "digit by digit" in greater.meta["filtered"][0]
    assert set(greater.ground_truth.labels["yy"]) <= set(language.DIGIT_YEARS)


def test_bpe_greater_than_metric_on_digits(bpe_tasks):
    model, tasks = bpe_tasks[False]
    task = tasks["greater-than"]
    tens = torch.tensor(task.ground_truth.labels["yy"]) // 10
    assert task.correct_tokens.tolist() == [model.to_single_token(str(t + 1)) for t in tens.tolist()]
    fake = torch.zeros(len(task), int(task.lengths.max()), model.cfg.d_vocab)
    rows = torch.arange(len(task))
    fake[rows, task.answer_pos, task.correct_tokens] = 100.0  # the next decade: later
    assert torch.allclose(task.metric(fake), torch.ones(len(task)), atol=1e-4) and task.accuracy(fake) == 1.0
    fake[rows, task.answer_pos, task.wrong_tokens] = 200.0  # the same decade: not later (YY ends in 9)
    assert torch.allclose(task.metric(fake), -torch.ones(len(task)), atol=1e-4) and task.accuracy(fake) == 0.0


def test_pairs_of_unequal_length_are_skipped_and_counted(bpe_model, monkeypatch):
    real = language._prepare
    calls = []

    def every_third_fails(model, ex, kind, mode):
        calls.append(ex)
        return None if len(calls) % 3 == 0 else real(model, ex, kind, mode)

    reference = mechinterp.tasks.load("ioi", bpe_model, n=40, seed=5)
    monkeypatch.setattr(language, "_prepare", every_third_fails)
    task = mechinterp.tasks.load("ioi", bpe_model, n=8, seed=5)
    # samples 3, 6, 9 fail before the 8th good one: the task is samples 1 2 4 5 7 8 10 11 of the stream
    assert task.meta["dropped_pairs"] == 3 and len(task) == 8
    keep = [0, 1, 3, 4, 6, 7, 9, 10]
    assert task.clean_prompts == [reference.clean_prompts[i] for i in keep]
    assert "3 sampled pairs skipped" in task.meta["filtered"][-1]
