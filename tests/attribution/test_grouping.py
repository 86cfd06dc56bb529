"""Word merging, span grouping, aggregation across methods, ranking, the diagnostic warning."""

from __future__ import annotations

import pytest
import torch

from mechinterp.attribution import (
    AttributionWarning,
    TokenAttribution,
    aggregate,
    diagnose,
    group_scores,
    merge_words,
    rank,
    word_groups,
)

GPT2 = ["<|endoftext|>", "The", " capital", " of", " Fr", "ance", " is", "."]


def _res(scores, tokens=GPT2, method="m"):
    return TokenAttribution(tokens, torch.tensor([scores], dtype=torch.float32), ["t"], method)


def test_word_groups():
    assert word_groups(GPT2, skip_first=True) == [[1], [2], [3], [4, 5], [6], [7]]
    assert word_groups(["<bos>", "w1", "w2"]) == [[0], [1], [2]]  # word-level tokenizer: every token a word


def test_merge_words_and_spans():
    res = _res([0.0, 1.0, 2.0, 0.5, 3.0, 4.0, 0.25, 0.1])
    words = merge_words(res)
    assert " France" in words.tokens and float(words.scores[0, words.tokens.index(" France")]) == 7.0
    spans = group_scores(res, {"context": (1, 6), "question": (6, 8)})
    torch.testing.assert_close(spans.scores[0], torch.tensor([10.5, 0.35]))


def test_aggregate_closed_forms():
    a = _res([0, 1, 3, 0, 0, 0, 0, 0], method="a")
    b = _res([0, 3, 1, 0, 0, 0, 0, 0], method="b")
    torch.testing.assert_close(aggregate([a, b], "mean").scores[0, 1:3], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(aggregate([a, b], "max").scores[0, 1:3], torch.tensor([0.75, 0.75]))
    torch.testing.assert_close(aggregate([a, b], "product").scores[0, 1:3], torch.tensor([0.1875, 0.1875]))
    assert rank(a)[:3] == [3, 2, 1]


def test_diagnostic_warns_on_bos_and_stop_words():
    with pytest.warns(AttributionWarning, match="BOS"):
        out = diagnose(_res([5.0, 0.1, 0.1, 2.0, 0.1, 0.1, 0.1, 0.1]))
    assert out["bos"] > 0.5 and out["stop_words"] > 0.2
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diagnose(_res([0.0, 0.1, 3.0, 0.0, 2.0, 2.0, 0.0, 0.0]))
