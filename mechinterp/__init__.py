"""mechinterp: a mechanistic-interpretability toolkit on TransformerLens.

Example:
    >>> import mechinterp
    >>> model = mechinterp.load("zoo:attn-only-2l")
    >>> cache = mechinterp.SharedCache(model, ["t1 t2 t3 t1 t2"], positions="last")
"""

from mechinterp import errors, features, lens, metrics, tasks, zoo
from mechinterp.core import SharedCache, Tokenized, answer_tokens, load, tokenize
from mechinterp.errors import MechinterpError

__all__ = ["MechinterpError", "SharedCache", "Tokenized", "answer_tokens", "errors", "features", "lens", "load", "metrics", "tasks", "tokenize", "zoo"]
__version__ = "0.1.0"
