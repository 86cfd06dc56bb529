"""The zoo format in core: every shipped model is there (a missing one fails, never skips)."""

from __future__ import annotations

import importlib
import sys
import warnings

import pytest

import mechinterp
from mechinterp.core import zoo_format
from mechinterp.errors import ModelLoadError

#: every model the package ships; tests that use them do not skip, so this list is the contract.
SHIPPED = ["attn-only-2l", "cot-direct", "cot-reader", "toy-lm", "tracr-frac-prevs", "tracr-prev-tokens", "tracr-reverse"]
#: the ones with a reference circuit (the CoT twins' mechanism is their scratchpad dependence, in metrics.json)
WITH_CIRCUIT = ["attn-only-2l", "toy-lm", "tracr-frac-prevs", "tracr-prev-tokens", "tracr-reverse"]


def test_every_shipped_model_is_present():
    assert zoo_format.names() == SHIPPED
    for name in SHIPPED:
        folder = zoo_format.path(name)
        for file in ("config.json", "model.safetensors", "card.md") + (("circuit.json",) if name in WITH_CIRCUIT else ("metrics.json",)):
            assert (folder / file).is_file(), f"zoo:{name} lacks {file}"
        assert zoo_format.card(name).startswith("#")


def test_zoo_package_re_exports_core():
    assert mechinterp.zoo.load_model is zoo_format.load_model
    assert mechinterp.zoo.ZOO_DIR == zoo_format.ZOO_DIR
    assert zoo_format.ZOO_DIR.parent.name == "zoo"


def test_unknown_model_and_file_raise():
    with pytest.raises(ModelLoadError, match="attn-only-2l"):
        zoo_format.path("no-such-model")
    with pytest.raises(ModelLoadError, match="ships no"):
        zoo_format.read_json("attn-only-2l", "nothing.json")


def test_round_trip(tiny_model, tmp_path):
    folder = zoo_format.save_model(tiny_model, tmp_path / "m", card="# tiny\n", extra={"x.json": {"a": 1}})
    again = zoo_format.load_model(folder)
    assert again.cfg.d_model == tiny_model.cfg.d_model and again.zoo_name == "m"
    tokens = tiny_model.to_tokens("w1 w2 w3")
    # weight processing at load (LN folding, centring) keeps the log-probabilities
    assert (again(tokens).log_softmax(-1) - tiny_model(tokens).log_softmax(-1)).abs().max() < 1e-4


def test_old_registry_module_warns():
    sys.modules.pop("mechinterp.zoo.registry", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module("mechinterp.zoo.registry")
    assert old.save_model is zoo_format.save_model
    assert any(issubclass(w.category, DeprecationWarning) and "core.zoo_format" in str(w.message) for w in caught)
