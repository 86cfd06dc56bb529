"""The model zoo: small trained models whose mechanisms are known, shipped in the package.

Load one with ``mechinterp.load("zoo:<name>")``; list them with :func:`names`; read the
model card with :func:`card`.

Layering: the zoo sits at the top, beside ``cli`` and ``report``. Its on-disk format
(:func:`save_model`, :func:`load_model`, :func:`read_json`...) lives in
:mod:`mechinterp.core.zoo_format` and is re-exported here; this package holds the model
files (``models/``), their training scripts (``train/``, which may import ``tasks``),
the tokenizer builder and the diagnostics. Nothing below the zoo imports it.
"""

from mechinterp.core.zoo_format import ZOO_DIR, card, load_model, names, path, read_json, save_model

__all__ = ["ZOO_DIR", "card", "load_model", "names", "path", "read_json", "save_model"]
