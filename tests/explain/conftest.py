"""Fixtures of the explain tests: the zoo's toy-lm (known mechanisms), loaded once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def toy_lm():
    import mechinterp

    return mechinterp.load("zoo:toy-lm")
