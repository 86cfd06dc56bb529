"""The core every method family imports: loading, sites, the shared cache, tokens, metrics, running the
model (:mod:`mechinterp.core.fastpath`) and intervening in it (:class:`Intervention`)."""

from mechinterp.core.cache import SharedCache
from mechinterp.core.fastpath import tl_flags
from mechinterp.core.intervention import Intervention
from mechinterp.core.loading import load, load_local_checkpoint
from mechinterp.core.metrics import Metric, kl_div, logit_diff, logits_at, logprob, normalise, prob
from mechinterp.core.sharded_cache import ShardedCache
from mechinterp.core.sites import resolve, resolve_many
from mechinterp.core.tokens import Tokenized, answer_tokens, check_same_lengths, tokenize

__all__ = [
    "Metric",
    "Intervention",
    "ShardedCache",
    "SharedCache",
    "Tokenized",
    "answer_tokens",
    "check_same_lengths",
    "kl_div",
    "load",
    "load_local_checkpoint",
    "logit_diff",
    "logits_at",
    "logprob",
    "normalise",
    "prob",
    "resolve",
    "resolve_many",
    "tl_flags",
    "tokenize",
]
