"""core/results: encode/decode of non-finite values, nested results, TensorView."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mechinterp.circuits import CircuitFaithfulness, NodeEffects, ReferenceComparison
from mechinterp.core.results import AbstractResult, decode, encode
from mechinterp.errors import MechinterpError


def test_non_finite_values_are_strict_json_and_come_back():
    value = {"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "t": torch.tensor([1.0, float("nan")]),
             "n": np.array([np.inf, 0.0]), "bf": torch.tensor([float("-inf"), 2.0], dtype=torch.bfloat16)}
    text = json.dumps(encode(value), allow_nan=False)
    back = decode(json.loads(text))
    assert math.isnan(back["a"]) and back["b"] == [math.inf, -math.inf, 1.5]
    assert torch.equal(back["t"].isnan(), torch.tensor([False, True])) and back["t"][0] == 1.0
    assert back["n"].dtype == torch.float64 and back["n"][0] == math.inf
    assert back["bf"].dtype == torch.bfloat16 and back["bf"][0] == -math.inf


def test_unknown_type_tag_is_a_mechinterp_error():
    with pytest.raises(MechinterpError, match="type tag"):
        AbstractResult.from_dict({"type": "NoSuchResult"})
    with pytest.raises(MechinterpError, match="dict"):
        CircuitFaithfulness.from_dict([1, 2])


def test_tensor_view_acts_like_its_tensor():
    f = CircuitFaithfulness(values=torch.tensor([1.0, 0.25, -0.5]), full=2.0, empty=0.0, n_edges=[3, 2, 1])
    assert torch.allclose(f, torch.tensor([1.0, 0.25, -0.5]))
    assert f.tolist() == [1.0, 0.25, -0.5] and f.shape == (3,) and len(f) == 3
    assert float(f[1]) == 0.25 and torch.equal(f[0] - f[1:], torch.tensor([0.75, 1.5]))
    assert torch.equal(f > 0, torch.tensor([True, True, False])) and float(f.mean()) == pytest.approx(0.25)
    assert torch.equal(1 - f, torch.tensor([0.0, 0.75, 1.5])) and torch.equal(-f, -f.values)
    assert np.asarray(f).tolist() == [1.0, 0.25, -0.5]
    assert [float(v) for v in f] == [1.0, 0.25, -0.5]
    with pytest.raises(AttributeError):
        f._missing  # noqa: B018


def test_mapping_results_read_like_dicts():
    stats = ReferenceComparison(auc=1.0, precision=0.5, recall=1.0, f1=2 / 3, n_selected=4, n_reference=2)
    assert dict(stats) == {"auc": 1.0, "precision": 0.5, "recall": 1.0, "f1": 2 / 3, "n_selected": 4, "n_reference": 2}
    assert "auc_pessimistic" not in stats and stats.get("auc_ranking") is None
    effects = NodeEffects(effects={"embed": 0.1, "L0H0": -0.9}, n_layers=1, n_heads=1)
    assert list(effects.items()) == [("embed", 0.1), ("L0H0", -0.9)] and effects.top(1) == [("L0H0", -0.9)]
    assert json.dumps(dict(effects))
