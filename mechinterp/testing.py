"""Helpers for tests of code built on mechinterp: no network, no hooks left behind."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from mechinterp.core.hooks import active_hooks, assert_no_hooks

__all__ = ["offline", "active_hooks", "assert_no_hooks"]


def _refuse(*args: object, **kwargs: object) -> None:
    raise OSError("network access is disabled (mechinterp.testing.offline)")


@contextmanager
def offline() -> Iterator[None]:
    """Make every socket connection fail inside the block, as on a machine without internet.

    Example:
        >>> with offline():
        ...     model = mechinterp.load("zoo:attn-only-2l")  # doctest: +SKIP
    """
    saved = socket.socket.connect, socket.socket.connect_ex, socket.create_connection
    socket.socket.connect, socket.socket.connect_ex, socket.create_connection = _refuse, _refuse, _refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.create_connection = saved  # type: ignore[assignment]
