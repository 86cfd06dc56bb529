"""Task generators with ground truth (see :mod:`mechinterp.tasks.base`).

Example:
    >>> import mechinterp
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> task = mechinterp.tasks.load("ioi", model, n=8)
"""

from mechinterp.tasks.base import GroundTruth, Task, load, logit_diff_metric, names, register

__all__ = ["GroundTruth", "Task", "load", "logit_diff_metric", "names", "register"]
