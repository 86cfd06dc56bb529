"""Tuned lens: below the logit lens's KL at every layer but the last on held-out toy-lm prompts; save/load."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import MechinterpError
from mechinterp.lens import LensComparison, TunedLens, compare_lenses

TASKS = ["ioi", "facts", "sentiment", "greater-than"]


def _prompts(model, split, n):
    return [p for t in TASKS for p in mechinterp.tasks.load(t, model, n=n, split=split).clean_prompts]


@pytest.fixture(scope="module")
def fitted(toy_lm):
    train = _prompts(toy_lm, "train", 32)
    affine = TunedLens(steps=60, lr=3e-3, batch_tokens=64).fit(toy_lm, train, progress=False)
    bias = TunedLens(kind="bias", steps=60, lr=1e-2, batch_tokens=64).fit(toy_lm, train, progress=False)
    return affine, bias


def test_tuned_lens_beats_the_logit_lens_on_held_out_prompts(toy_lm, fitted):
    affine, bias = fitted
    held_out = _prompts(toy_lm, "test", 8)
    cmp = compare_lenses(toy_lm, held_out, {"logit": None, "tuned": affine, "bias only": bias})
    last = len(cmp.rows) - 1
    for name in ("tuned", "bias only"):
        assert torch.all(cmp.kl[name][:last] < cmp.kl["logit"][:last]), (name, cmp.kl)
        assert torch.all(cmp.perplexity[name][:last] < cmp.perplexity["logit"][:last] * 1.05), (name, cmp.perplexity)
        assert float(cmp.kl[name][last]) == pytest.approx(0.0, abs=1e-5)  # the final row is the model's output
    assert torch.all(cmp.kl["tuned"][:last] < cmp.kl["bias only"][:last])  # the affine lens is the richer one
    assert affine.loss_history_[-1] < 0.5 * affine.loss_history_[0]
    assert torch.all(affine.weight_[last] == 0) and torch.all(bias.weight_ == 0)
    assert_no_hooks(toy_lm)
    assert all(p.requires_grad for p in toy_lm.parameters())  # restored after training


def test_save_load_round_trip(toy_lm, fitted, tmp_path):
    affine, _ = fitted
    back = TunedLens.load(affine.save(tmp_path / "lens.safetensors"))
    assert back.get_params() == affine.get_params() and back.trained_rows_ == affine.trained_rows_
    x = torch.randn(5, toy_lm.cfg.d_model)
    torch.testing.assert_close(back.translate(1, x), affine.translate(1, x))
    a, b = back.apply(toy_lm, ["The capital of France is"]), affine.apply(toy_lm, ["The capital of France is"])
    torch.testing.assert_close(a.kl, b.kl)
    cmp = compare_lenses(toy_lm, ["The capital of France is"], {"logit": None, "tuned": back})
    assert LensComparison.load(cmp.save(tmp_path / "cmp.json")).kl.keys() == cmp.kl.keys()
    assert "Lens comparison" in cmp.to_html()
    cmp.plot()


def test_layers_subset_trains_only_those(toy_lm):
    lens = TunedLens(layers=[1], steps=3).fit(toy_lm, ["The capital of France is"], progress=False)
    assert lens.trained_rows_ == [1]
    assert torch.all(lens.bias_[0] == 0) and torch.any(lens.bias_[1] != 0)


def test_bad_input(toy_lm, tiny_model, fitted, tmp_path):
    with pytest.raises(MechinterpError, match="kind must be"):
        TunedLens(kind="mlp").fit(toy_lm, ["w"])
    with pytest.raises(MechinterpError, match="out of range"):
        TunedLens(layers=[9]).fit(toy_lm, ["The capital of France is"])
    with pytest.raises(MechinterpError, match="fitted on a model"):
        fitted[0].apply(tiny_model, ["w1 w2"])
    with pytest.raises(MechinterpError, match="No tuned lens"):
        TunedLens.load(tmp_path / "missing.safetensors")
    with pytest.raises(MechinterpError, match="positions='all'"):
        TunedLens(steps=1).fit(toy_lm, mechinterp.SharedCache(toy_lm, ["The capital of France is"], positions="last"))
