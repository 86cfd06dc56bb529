"""Zoo models shared by the lens tests (loaded once per session)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def toy_lm():
    import mechinterp

    return mechinterp.load("zoo:toy-lm")


@pytest.fixture(scope="session")
def sentiment_split(toy_lm):
    """(positive train prompts, negative train prompts, held-out test task)."""
    import mechinterp

    train = mechinterp.tasks.load("sentiment", toy_lm, n=128, split="train")
    test = mechinterp.tasks.load("sentiment", toy_lm, n=64, split="test")
    pos = [p for p, a in zip(train.clean_prompts, train.correct_answers) if a == "positive"]
    neg = [p for p, a in zip(train.clean_prompts, train.correct_answers) if a == "negative"]
    return pos, neg, test
