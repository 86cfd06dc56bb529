"""Tokenisation helpers: padding, lengths, single-token answers, and their errors."""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.tokens import answer_tokens, check_same_lengths, tokenize
from mechinterp.errors import EmptyInputError, MultiTokenAnswerError, PromptTooLongError, ShapeMismatchError


def test_right_and_left_padding(tiny_model):
    right = tokenize(tiny_model, ["w1 w2 w3", "w4"])
    assert right.tokens.tolist() == [[1, 4, 5, 6], [1, 7, 0, 0]]
    assert right.lengths.tolist() == [4, 2] and right.last_pos.tolist() == [3, 1]
    assert right.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    left = tokenize(tiny_model, ["w1 w2 w3", "w4"], padding_side="left")
    assert left.tokens.tolist() == [[1, 4, 5, 6], [0, 0, 1, 7]] and left.last_pos.tolist() == [3, 3]


def test_token_tensors_pass_through(tiny_model):
    batch = tokenize(tiny_model, torch.tensor([5, 6, 7]))
    assert batch.tokens.shape == (1, 3) and batch.lengths.tolist() == [3]


def test_errors(tiny_model):
    with pytest.raises(EmptyInputError, match="empty"):
        tokenize(tiny_model, [])
    with pytest.raises(EmptyInputError, match="Prompt 1"):
        tokenize(tiny_model, ["w1", ""])
    with pytest.raises(PromptTooLongError, match="Prompt 0 has 21 tokens"):
        tokenize(tiny_model, [" ".join(["w2"] * 20)])
    with pytest.raises(PromptTooLongError):
        tokenize(tiny_model, torch.zeros(1, 17, dtype=torch.long))


def test_answer_tokens(tiny_model):
    assert answer_tokens(tiny_model, [" w1", "w2"]).tolist() == [4, 5]
    with pytest.raises(MultiTokenAnswerError, match=r"2 tokens.*\['w1', 'w2'\]"):
        answer_tokens(tiny_model, " w1 w2")
    with pytest.raises(EmptyInputError):
        answer_tokens(tiny_model, [])


def test_clean_corrupted_alignment(tiny_model):
    clean = tokenize(tiny_model, ["w1 w2", "w3 w4 w5"])
    check_same_lengths(clean, tokenize(tiny_model, ["w6 w7", "w8 w9 w10"]))
    with pytest.raises(ShapeMismatchError, match="prompt 1"):
        check_same_lengths(clean, tokenize(tiny_model, ["w6 w7", "w8 w9"]))
    with pytest.raises(ShapeMismatchError, match="pair them"):
        check_same_lengths(clean, tokenize(tiny_model, ["w6 w7"]))
