"""Ablation kinds: one name, one meaning, in every family that ablates.

What a removed component carries instead of its clean activation:

============  ==========================================================================
``"zero"``    zeros.
``"mean"``    its mean over the reference prompts, position by position; at positions where
              some prompts are padding, the mean is over the prompts with a real token there.
``"resample"``  the activation of *another* prompt of the same batch: prompt ``i`` takes prompt
              ``perm[i]``'s, where ``perm = resample_permutation(n_prompts, seed)`` is a seeded
              random permutation with no fixed points (no prompt keeps its own activation). The
              same ``seed`` pairs the same prompts in patching and in circuits.
``"corrupted"`` (circuits) the activation on the task's corrupted prompt (patching says this with
              ``corrupted=`` and no ``ablation``).
============  ==========================================================================

Example:
    >>> perm = resample_permutation(4, seed=0)
    >>> sorted(perm.tolist()), bool((perm != torch.arange(4)).all())
    ([0, 1, 2, 3], True)
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

from mechinterp.errors import MechinterpError

__all__ = ["ABLATION_KINDS", "resample_permutation"]

#: every ablation kind, with its meaning (see the module docstring).
ABLATION_KINDS: dict[str, str] = {
    "zero": "zeros",
    "mean": "the mean over the reference prompts, per position (padding excluded)",
    "resample": "another prompt's activation, by a seeded permutation without fixed points",
    "corrupted": "the activation on the corrupted prompt",
}


def resample_permutation(n: int, seed: int = 0) -> Int[Tensor, " n"]:
    """A seeded random permutation of ``range(n)`` with no fixed points (a derangement).

    Uniform over derangements: ``torch.randperm`` draws from one generator seeded with
    ``seed`` until a draw moves every index (about e ≈ 2.7 draws on average).

    Args:
        n: the number of prompts (at least 2).
        seed: the generator seed; the same seed gives the same permutation.

    Returns:
        ``[n]`` int64 on the CPU: prompt ``i`` takes the activation of prompt ``perm[i]``.

    Raises:
        MechinterpError: ``n < 2`` (one prompt has no other prompt to take from).
    """
    n = int(n)
    if n < 2:
        raise MechinterpError("Resample ablation needs at least 2 prompts (each takes another's activations).")
    gen = torch.Generator().manual_seed(int(seed))
    identity = torch.arange(n)
    while True:
        perm = torch.randperm(n, generator=gen)
        if bool((perm != identity).all()):
            return perm
