"""Prompt text per tokenizer kind, and word positions checked against the whole prompt."""

from __future__ import annotations

import re

import torch

from mechinterp.tasks.text import render, word_positions


def test_render_per_kind():
    words = "Then , Mary and John went to the school . John gave it to".split()
    assert render(words, "word") == " ".join(words)
    assert render(words, "subword") == "Then, Mary and John went to the school. John gave it to"
    assert render("Review : the food was great . Sentiment :".split(), "subword") == (
        "Review: the food was great. Sentiment:"
    )


class _Stub:
    """A tokenizer that merges punctuation runs ("::" is one token) and may prepend BOS."""

    def __init__(self, bos: bool):
        self.bos = bos
        self.vocab: dict[str, int] = {}

    def to_tokens(self, text, truncate=False):
        pieces = (["<bos>"] if self.bos else []) + re.findall(r"\w+|[^\w\s]+", text)
        return torch.tensor([[self.vocab.setdefault(p, len(self.vocab)) for p in pieces]])


def test_word_positions_count_bos_and_reject_merges():
    words = ["When", "Mary", "left", ",", "John", "stayed"]
    assert word_positions(_Stub(bos=False), words, [1, 4], "subword") == [1, 4]
    assert word_positions(_Stub(bos=True), words, [1, 4], "subword") == [2, 5]
    # "a:" ends in ":" but "a::" tokenises "::" as one token: the first ":" has no position
    assert word_positions(_Stub(bos=False), ["a", ":", ":", "b"], [1], "subword") is None
    assert word_positions(_Stub(bos=False), ["a", ":", ":", "b"], [3], "word") == [3]
