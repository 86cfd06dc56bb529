"""Public alias of :mod:`mechinterp.core.metrics` (``mechinterp.metrics.logit_diff`` ...)."""

from mechinterp.core.metrics import Metric, kl_div, logit_diff, logits_at, logprob, normalise, prob

__all__ = ["Metric", "kl_div", "logit_diff", "logits_at", "logprob", "normalise", "prob"]
