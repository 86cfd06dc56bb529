"""Local randomness: seeded generators, and a guard that keeps the global RNG states as they were.

Every stochastic method takes ``seed=`` and draws from its own generator
(``torch.Generator().manual_seed(seed)``, ``np.random.default_rng(seed)``,
``random.Random(seed)``), so the same seed gives the same result and the caller's global
random state (``torch.manual_seed``, ``np.random.seed``, ``random.seed``) is never touched.
:func:`keep_global_rng` wraps calls into third-party code that draws from (or reseeds) a
global generator behind our back: importing scikit-learn's linear models draws Python
random bits once (``rich``), and scikit-learn estimators built with ``random_state=None``
draw from NumPy's global state.

Example:
    >>> import random
    >>> random.seed(0); before = random.getstate()
    >>> with keep_global_rng():
    ...     _ = random.random()
    >>> random.getstate() == before
    True
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["check_seed", "keep_global_rng", "torch_generator"]


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as a non-negative int, or a :class:`~mechinterp.errors.MechinterpError` naming ``name``."""
    from mechinterp.errors import MechinterpError

    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise MechinterpError(f"{name} must be a non-negative integer (got {seed!r}); pass e.g. {name}=0.")
    return int(seed)


def torch_generator(seed: Any, device: Any = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (the global generator is untouched)."""
    return torch.Generator(device=device).manual_seed(check_seed(seed))


@contextlib.contextmanager
def keep_global_rng() -> Iterator[None]:
    """Restore torch's (CPU), NumPy's and Python's global random states on exit, even on error."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
