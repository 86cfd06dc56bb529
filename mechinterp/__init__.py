"""mechinterp: a mechanistic-interpretability toolkit on TransformerLens.

Example:
    >>> import mechinterp
    >>> model = mechinterp.load("zoo:attn-only-2l")
    >>> cache = mechinterp.SharedCache(model, ["t1 t2 t3 t1 t2"], positions="last")
"""

from mechinterp import errors, metrics, tasks, zoo
from mechinterp.core import ShardedCache, SharedCache, Tokenized, answer_tokens, load, tokenize
from mechinterp.core.distributed import distributed
from mechinterp.errors import MechinterpError

__all__ = ["MechinterpError", "ShardedCache", "SharedCache", "Tokenized", "answer_tokens", "distributed", "errors", "load", "metrics", "tasks", "tokenize", "zoo"]
__version__ = "0.1.0"

#: method families reachable as attributes, imported on first use (``import mechinterp`` stays fast)
FAMILIES = ("attention", "attribution", "circuits", "patching", "probes", "explain", "influence", "dictionary", "lens", "features", "report", "viz", "core")


def __getattr__(name: str):  # PEP 562: mechinterp.patching.activation_patch without importing mechinterp.patching
    if name in FAMILIES:
        import importlib

        module = importlib.import_module(f"mechinterp.{name}")
        globals()[name] = module
        return module
    import difflib

    close = difflib.get_close_matches(name, [*__all__, *FAMILIES], n=1)
    hint = f" Did you mean mechinterp.{close[0]}?" if close else ""
    raise AttributeError(f"module 'mechinterp' has no attribute {name!r}.{hint}")


def __dir__() -> list[str]:
    return sorted({*globals(), *FAMILIES})
