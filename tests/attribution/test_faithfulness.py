"""Deletion/insertion curves and AOPC on a game with a known answer, and on the model."""

from __future__ import annotations

import pytest
import torch

from mechinterp.attribution import attribute, faithfulness, faithfulness_from_value_fn

W = torch.tensor([[4.0], [3.0], [2.0], [1.0]], dtype=torch.float64)


def _value(masks):
    return masks.double() @ W


def test_additive_game_closed_form():
    good = faithfulness_from_value_fn(_value, torch.tensor([4.0, 3.0, 2.0, 1.0]), bins=(0.25, 0.5))
    assert good.deletion == [10.0, 6.0, 3.0, 1.0, 0.0] and good.insertion == [0.0, 4.0, 7.0, 9.0, 10.0]
    assert good.comprehensiveness == pytest.approx((4 + 7) / 2)
    assert good.sufficiency == pytest.approx((6 + 3) / 2)
    assert good.deletion_auc == pytest.approx(0.25 * (1 + 0.6 * 2 + 0.3 * 2 + 0.1 * 2) / 2)
    bad = faithfulness_from_value_fn(_value, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert good.deletion_auc < bad.deletion_auc and good.insertion_auc > bad.insertion_auc


def test_on_the_model(tiny_model):
    prompt = "w1 w2 w3 w4 w5"
    res = attribute(tiny_model, prompt, "w7", method="occlusion", warn=False)
    f = faithfulness(tiny_model, prompt, "w7", res, replacement="unk")
    assert len(f.deletion) == 6 and f.deletion[0] == pytest.approx(res.metadata["target_values"][0], abs=1e-5)
    assert f.replacement == "unk" and "<img" in f.to_html()
    spans = attribute(tiny_model, prompt, "w7", method="occlusion", features={"a": (1, 3), "b": (3, 6)}, warn=False)
    assert len(faithfulness(tiny_model, prompt, "w7", spans).deletion) == 3
