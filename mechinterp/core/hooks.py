"""Hook hygiene: every method must leave the model with no hooks, even when it raises.

Use TransformerLens's ``model.hooks(fwd_hooks=..., bwd_hooks=...)`` context manager for
temporary hooks (it removes them on exit, also on error); :func:`active_hooks` lists what
is still attached, for tests and sanity checks.
"""

from __future__ import annotations

from typing import Any

__all__ = ["active_hooks", "assert_no_hooks"]


def active_hooks(model: Any) -> list[str]:
    """Names of the hook points that still carry forward or backward hooks."""
    return [name for name, hp in model.hook_dict.items() if hp.fwd_hooks or hp.bwd_hooks or hp._forward_hooks or hp._backward_hooks]


def assert_no_hooks(model: Any) -> None:
    """Raise ``AssertionError`` naming any hook point that still has hooks attached."""
    left = active_hooks(model)
    assert not left, f"hooks left on the model at: {left}"
