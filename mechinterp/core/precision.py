"""The precision a model runs in, and keeping TransformerLens's ``cfg.dtype`` in step with its weights.

TransformerLens reads ``model.cfg.dtype`` inside the forward pass: its LayerNorm / RMSNorm
compute in float32 and cast the result back to ``cfg.dtype``, and a fresh KV cache is
allocated in ``cfg.dtype``. ``model.to(torch.bfloat16)`` updates it; the plain
``torch.nn.Module`` casts ``model.half()`` / ``model.bfloat16()`` do not, and then TL's own
forward fails inside a matmul (``mat1 and mat2 must have the same dtype``).

:func:`synced_dtype` makes such a model run as ``model.to(dtype)`` would have made it: while
the block is active, ``cfg.dtype`` is the weights' dtype (restored afterwards, also on
error). Weights of several floating dtypes raise a :class:`~mechinterp.errors.MechinterpError`
that says how to cast the model. :func:`runs_synced` applies it to a function whose first
argument is the model.

Example:
    >>> import torch
    >>> from mechinterp.core.precision import synced_dtype
    >>> model = model.half()  # doctest: +SKIP
    >>> with synced_dtype(model):  # doctest: +SKIP
    ...     logits = model(tokens)  # float16, as after model.to(torch.float16)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

from mechinterp.errors import MechinterpError

__all__ = ["REDUCED", "weights_dtype", "is_reduced", "synced_dtype", "runs_synced", "runs_synced_method", "fp16_hint"]

#: Floating dtypes with an 8-bit (bf16) or 11-bit (fp16) significand.
REDUCED = (torch.bfloat16, torch.float16)

F = TypeVar("F", bound=Callable[..., Any])


def weights_dtype(model: Any) -> torch.dtype:
    """The one floating dtype of ``model``'s parameters (``cfg.dtype`` if it has none).

    Raises:
        MechinterpError: parameters of several floating dtypes.
    """
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if len(dtypes) > 1:
        names = ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes))
        raise MechinterpError(
            f"The model's weights mix several dtypes ({names}); cast the whole model with "
            "model.to(torch.bfloat16) (or float16 / float32) or load it with mechinterp.load(..., dtype=...)."
        )
    return dtypes.pop() if dtypes else getattr(model.cfg, "dtype", torch.float32)


def is_reduced(dtype: torch.dtype) -> bool:
    """Whether ``dtype`` is bf16 or fp16."""
    return dtype in REDUCED


@contextmanager
def synced_dtype(model: Any) -> Iterator[torch.dtype]:
    """Run ``model`` with ``cfg.dtype`` equal to its weights' dtype; yields that dtype.

    Nested uses and models already in step change nothing.
    """
    dtype = weights_dtype(model)
    cfg = getattr(model, "cfg", None)
    old = getattr(cfg, "dtype", dtype)
    if cfg is None or old == dtype:
        yield dtype
        return
    cfg.dtype = dtype
    try:
        yield dtype
    finally:
        cfg.dtype = old


def runs_synced(fn: F) -> F:
    """Decorate ``fn(model, ...)`` to run inside :func:`synced_dtype` of its model."""

    @functools.wraps(fn)
    def wrapper(model: Any, *args: Any, **kwargs: Any) -> Any:
        with synced_dtype(model):
            return fn(model, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def runs_synced_method(fn: F) -> F:
    """Decorate a method ``fn(self, ...)`` of an object with a ``model`` attribute to run inside :func:`synced_dtype`."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with synced_dtype(self.model):
            return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def fp16_hint(dtype: torch.dtype) -> str:
    """A sentence for non-finite errors: fp16's range (max 65504) is the usual cause on real models."""
    if dtype == torch.float16:
        return (
            " The model runs in float16, whose range (max 65504) real models can exceed: load it with "
            "dtype=torch.bfloat16 (same range as float32) or torch.float32."
        )
    return ""
