"""Task generators with ground truth (see :mod:`mechinterp.tasks.base`).

Example:
    >>> import mechinterp
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> task = mechinterp.tasks.load("ioi", model, n=8)
"""

from mechinterp.tasks.base import GroundTruth, Task, load, logit_diff_metric, names, register
from mechinterp.tasks import induction  # noqa: F401  (registers "induction")
from mechinterp.tasks import language  # noqa: F401  (registers ioi, facts, sentiment, greater-than)
from mechinterp.tasks import tracr  # noqa: F401  (registers "tracr-reverse", "tracr-frac-prevs")

__all__ = ["GroundTruth", "Task", "load", "logit_diff_metric", "names", "register"]
