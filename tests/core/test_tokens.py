"""Tokenisation helpers: padding, lengths, single-token answers, and their errors."""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.tokens import answer_tokens, check_same_lengths, tokenize, tokenizer_kind
from mechinterp.errors import (
    EmptyInputError,
    LeadingSpaceError,
    MultiTokenAnswerError,
    PromptTooLongError,
    ShapeMismatchError,
    TokenizationError,
    UnknownTokenError,
)


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


def test_tokenizer_kind(tiny_model, bpe_model):
    assert tokenizer_kind(tiny_model) == "word" and tokenizer_kind(bpe_model) == "subword"
    assert tokenizer_kind(bpe_model.tokenizer) == "subword"


def test_unknown_answer_on_a_word_tokenizer(tiny_model):
    # "w99" is not in the vocabulary: without the check it would silently score <unk> (id 2)
    assert tiny_model.to_tokens("w99", prepend_bos=False)[0].tolist() == [2]
    with pytest.raises(UnknownTokenError, match=r"'w99'.*'<unk>' \(id 2\).*closest known \['w9'"):
        answer_tokens(tiny_model, ["w1", "w99"])
    assert issubclass(UnknownTokenError, TokenizationError)
    assert answer_tokens(tiny_model, ["w1", "w9"]).tolist() == [4, 12]


def test_leading_space_on_a_bpe_tokenizer(bpe_model):
    spaced, bare = bpe_model.to_single_token(" Paris"), bpe_model.to_single_token("Paris")
    assert spaced != bare  # both single tokens, different ids: the case the check is for
    assert answer_tokens(bpe_model, [" Paris"]).tolist() == [spaced]
    with pytest.raises(LeadingSpaceError, match=rf"'Paris' \(token {bare}\) and ' Paris' \(token {spaced}\).*Pass ' Paris'"):
        answer_tokens(bpe_model, ["Paris"])
    assert answer_tokens(bpe_model, ["Paris"], check_leading_space=False).tolist() == [bare]
    assert issubclass(LeadingSpaceError, TokenizationError)
    # no space form several tokens, spaced form one: the message says to use the spaced form
    lima = bpe_model.to_single_token(" Lima")
    with pytest.raises(MultiTokenAnswerError, match=rf"'Lima' is \d tokens .*\['L'.*' Lima' \(with a leading space\) is one token \({lima}\)"):
        answer_tokens(bpe_model, "Lima")
    # digits and punctuation are not letters: "7" after "17" is the right form, no check
    assert answer_tokens(bpe_model, ["7", ","]).tolist() == [bpe_model.to_single_token("7"), bpe_model.to_single_token(",")]
    with pytest.raises(MultiTokenAnswerError, match=r"\['ĠTe'|\[' Te'"):
        answer_tokens(bpe_model, " Tegucigalpa")
