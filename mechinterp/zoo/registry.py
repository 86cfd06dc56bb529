"""Deprecated: the zoo format moved to :mod:`mechinterp.core.zoo_format` (import from ``mechinterp.zoo``)."""

from mechinterp.core.deprecation import warn_renamed
from mechinterp.core.zoo_format import ZOO_DIR, card, load_model, names, path, read_json, save_model

__all__ = ["ZOO_DIR", "card", "load_model", "names", "path", "read_json", "save_model"]

warn_renamed("mechinterp.zoo.registry", "mechinterp.zoo (or mechinterp.core.zoo_format)")
