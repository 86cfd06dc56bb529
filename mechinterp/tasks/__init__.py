"""Task generators with ground truth (see :mod:`mechinterp.tasks.base`).

Example:
    >>> import mechinterp
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> task = mechinterp.tasks.load("ioi", model, n=8)
    >>> solved = mechinterp.tasks.load("ioi", model, n=8, only_solved=True)  # prompts the model gets right
    >>> mine = mechinterp.tasks.from_pairs(model, clean=["The capital of France is"],
    ...     corrupted=["The capital of Spain is"], answers=["Paris"], wrong_answers=["Madrid"])
"""

from mechinterp.tasks.base import GroundTruth, Task, load, logit_diff_metric, names, register
from mechinterp.tasks.custom import from_pairs
from mechinterp.tasks import induction  # noqa: F401  (registers "induction")
from mechinterp.tasks import language  # noqa: F401  (registers ioi, facts, sentiment, greater-than)
from mechinterp.tasks import tracr  # noqa: F401  (registers "tracr-reverse", "tracr-frac-prevs", "tracr-prev-tokens")

__all__ = ["GroundTruth", "Task", "from_pairs", "load", "logit_diff_metric", "names", "register"]
