"""mechinterp: a mechanistic-interpretability toolkit on TransformerLens.

Example:
    >>> import mechinterp
    >>> model = mechinterp.load("zoo:attn-only-2l")
"""

from mechinterp import zoo
from mechinterp.core.loading import load
from mechinterp.errors import MechinterpError

__all__ = ["MechinterpError", "load", "zoo"]
__version__ = "0.1.0"
