"""The model zoo: small trained models whose mechanisms are known, shipped in the package.

Load one with ``mechinterp.load("zoo:<name>")``; list them with :func:`names`; read the
model card with :func:`card`.
"""

from mechinterp.zoo.registry import ZOO_DIR, card, load_model, names, path, read_json, save_model

__all__ = ["ZOO_DIR", "card", "load_model", "names", "path", "read_json", "save_model"]
