"""Old names kept working for one release, with a :class:`DeprecationWarning` that names the new one.

Two tools:

* :func:`deprecated_alias` — a function under its old name that warns, then calls the new one;
* :func:`renamed_keyword` — read a keyword argument under its old name (warning) or its new one.

Every rename lives in one table, :data:`RENAMED`, which ``docs/architecture.md`` lists too.

Example:
    >>> import warnings
    >>> def new(x): return x + 1
    >>> old = deprecated_alias(new, "pkg.old", "pkg.new")
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     old(1), caught[0].category.__name__
    (2, 'DeprecationWarning')
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from mechinterp.errors import MechinterpError

__all__ = ["RENAMED", "deprecated_alias", "renamed_keyword", "warn_renamed"]

F = TypeVar("F", bound=Callable[..., Any])

#: old public name -> new public name (removed in the release after next).
RENAMED: dict[str, str] = {
    "mechinterp.attribution.base.prepare": "mechinterp.attribution.base.prepare_prompt",
    "mechinterp.patching.inputs.prepare": "mechinterp.patching.inputs.prepare_patch_inputs",
    "mechinterp.circuits.prepare": "mechinterp.circuits.prepare_edge_patching",
    "mechinterp.attribution.Metric": "mechinterp.attribution.MetricTarget",
    "mechinterp.probes.collect_activations(position=)": "mechinterp.probes.collect_activations(positions=)",
    "mechinterp.probes.from_task(position=)": "mechinterp.probes.from_task(positions=)",
    "mechinterp.patching.causal_trace(subject_positions=)": "mechinterp.patching.causal_trace(positions=)",
    "mechinterp.zoo.registry": "mechinterp.core.zoo_format",
}


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """Emit the :class:`DeprecationWarning` for ``old`` (renamed ``new``)."""
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; use {new} instead.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def deprecated_alias(func: F, old: str, new: str) -> F:
    """``func`` under its old name ``old``: warns once per call site, then calls ``func``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        warn_renamed(old, new)
        return func(*args, **kwargs)

    wrapper.__doc__ = f"Deprecated alias of :func:`{new}` (old name ``{old}``)."
    wrapper.__deprecated_alias_of__ = new  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def renamed_keyword(new_value: Any, old_value: Any, old: str, new: str, *, default: Any = None) -> Any:
    """The value of a renamed keyword: ``old_value`` (with a warning) when given, else ``new_value``.

    Args:
        new_value: what the caller passed under the new name (``default`` when not passed).
        old_value: what the caller passed under the old name (``None`` when not passed).
        old, new: the keyword's old and new names, for the messages.
        default: the new keyword's default, to tell "passed" from "not passed".

    Raises:
        MechinterpError: both names given.
    """
    if old_value is None:
        return new_value
    warn_renamed(f"the keyword {old}=", f"{new}=", stacklevel=4)
    if new_value is not default and new_value is not old_value:
        raise MechinterpError(f"Pass {new}= only ({old}= is its deprecated old name); got both.")
    return old_value
