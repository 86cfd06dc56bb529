"""The induction task: shapes, ground truth by construction, determinism, and that
zoo:attn-only-2l solves it by induction."""

from __future__ import annotations

import pytest
import torch

import mechinterp
import mechinterp.tasks
from mechinterp.errors import MechinterpError


@pytest.fixture(scope="module")
def model():
    return mechinterp.load("zoo:attn-only-2l")


@pytest.fixture(scope="module")
def task(model):
    return mechinterp.tasks.load("induction", model, n=64, seed=0)


def test_registered():
    assert "induction" in mechinterp.tasks.names()


def test_shapes_and_construction(task):
    n, length = task.clean_tokens.shape
    L = task.meta["seq_len"]
    assert task.corrupted_tokens.shape == (n, length) == (64, 2 * L)
    assert (task.lengths == length).all() and (task.answer_pos == length - 1).all()
    assert (task.clean_tokens[:, 0] == 1).all() and (task.corrupted_tokens[:, 0] == 1).all()
    first, second = task.clean_tokens[:, 1 : 1 + L], task.clean_tokens[:, 1 + L :]
    assert torch.equal(second, first[:, :-1])
    assert torch.equal(task.correct_tokens, first[:, -1])
    assert torch.equal(task.corrupted_tokens[:, : 1 + L], task.clean_tokens[:, : 1 + L])
    for i in range(n):
        seen = set(first[i].tolist())
        assert not seen & set(task.corrupted_tokens[i, 1 + L :].tolist())  # the repeat is broken
        assert task.wrong_tokens[i].item() not in seen


def test_random_corruption(model):
    task = mechinterp.tasks.load("induction", model, n=16, seed=0, corruption="random")
    default = mechinterp.tasks.load("induction", model, n=16, seed=0)
    assert torch.equal(task.clean_tokens, default.clean_tokens) and task.meta["corruption"] == "random"
    L = task.meta["seq_len"]
    for i in range(len(task)):
        seen = set(task.clean_tokens[i, 1 : 1 + L].tolist())
        corrupted = task.corrupted_tokens[i, 1:].tolist()
        assert len(set(corrupted)) == len(corrupted)  # a random-token sequence: nothing repeats
        assert not seen & set(corrupted)  # both copies change: queries, keys and values all differ
        assert task.wrong_tokens[i].item() not in seen | set(corrupted)
    with torch.no_grad():
        assert task.accuracy(model(task.clean_tokens)) > 0.95 and task.accuracy(model(task.corrupted_tokens)) < 0.2
    with pytest.raises(MechinterpError, match="corruption"):
        mechinterp.tasks.load("induction", model, n=2, corruption="nope")
    assert task.correct_answers[0] == f"t{task.correct_tokens[0].item() - 3}"


def test_ground_truth_positions(task):
    for i, (answer_at, current_at) in enumerate(task.ground_truth.positions):
        toks = task.clean_tokens[i]
        assert toks[answer_at] == task.correct_tokens[i]
        assert toks[current_at] == toks[-1]
        assert current_at + 1 == answer_at
    labels = task.ground_truth.labels
    assert len(labels["position_in_repeat"]) == len(task)
    assert len(labels["repeated"][0]) == task.clean_tokens.shape[1]


def test_circuit_from_zoo(task):
    circuit = task.ground_truth.circuit
    assert circuit is not None and circuit["heads"]["induction"]


def test_attn_only_2l_solves_it(model, task):
    with torch.no_grad():
        clean, corrupted = model(task.clean_tokens), model(task.corrupted_tokens)
    diff = task.metric(clean) - task.metric(corrupted)
    assert diff.mean() > 3.0
    assert task.accuracy(clean) > 0.95
    assert task.accuracy(corrupted) < 0.2


def test_deterministic_in_seed(model):
    a = mechinterp.tasks.load("induction", model, n=8, seed=3)
    b = mechinterp.tasks.load("induction", model, n=8, seed=3)
    c = mechinterp.tasks.load("induction", model, n=8, seed=4)
    assert torch.equal(a.clean_tokens, b.clean_tokens) and torch.equal(a.wrong_tokens, b.wrong_tokens)
    assert a.clean_prompts == b.clean_prompts
    assert not torch.equal(a.clean_tokens, c.clean_tokens)


def test_other_models_and_errors(tiny_model):
    task = mechinterp.tasks.load("induction", tiny_model, n=4, seq_len=6)
    assert task.clean_tokens.shape == (4, 12) and task.ground_truth.circuit is None
    assert tiny_model.to_tokens(task.clean_prompts[0]).tolist()[0] == task.clean_tokens[0].tolist()
    with pytest.raises(MechinterpError, match="n_ctx"):
        mechinterp.tasks.load("induction", tiny_model, n=4, seq_len=12)
    with pytest.raises(MechinterpError, match="seq_len"):
        mechinterp.tasks.load("induction", tiny_model, n=4, seq_len=2)


def test_subword_tokenizer_prompts_round_trip():
    """With a byte-level BPE tokenizer only whole-word pieces ("Ġcat") are drawn, so the
    prompt texts tokenise back to exactly the task's tokens."""
    import types

    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    from mechinterp.tasks.induction import word_ids

    text = ["the cat sat on the mat while a dog ran far away from home, isn't it? 123"] * 20
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(text, vocab_size=350, min_frequency=1, special_tokens=["<|endoftext|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>")
    cfg = types.SimpleNamespace(d_vocab=len(tok), n_ctx=64, default_prepend_bos=True)
    fake = types.SimpleNamespace(tokenizer=tok, cfg=cfg)
    pieces = tok.convert_ids_to_tokens(word_ids(fake).tolist())
    assert pieces and all(p.startswith("Ġ") and p[1:].isalpha() for p in pieces)
    task = mechinterp.tasks.load("induction", fake, n=8, seq_len=5)
    assert (task.clean_tokens[:, 0] == tok.bos_token_id).all()
    for i in range(len(task)):
        assert tok(task.clean_prompts[i])["input_ids"] == task.clean_tokens[i, 1:].tolist()
        assert tok(task.corrupted_prompts[i])["input_ids"] == task.corrupted_tokens[i, 1:].tolist()
