"""Labelled prompts to activations: positions, spilling, CSV, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechinterp.errors import MechinterpError, ShapeMismatchError, TokenizationError, UnknownSiteError
from mechinterp.probes import SingleClassError, collect_activations, read_labelled_csv

PROMPTS = ["w1 w2 w3 w4", "w5 w6 w7", "w8 w9 w10 w11 w12", "w13 w2 w14", "w15 w16 w2 w17 w18 w19"]
LABELS = ["a", "b", "a", "b", "a"]


@pytest.fixture(scope="module")
def reference(tiny_model):
    return [tiny_model.run_with_cache(p)[1] for p in PROMPTS]


def test_positions_match_run_with_cache(tiny_model, reference):
    last = collect_activations(tiny_model, PROMPTS, LABELS, positions="last", progress=False)
    span = collect_activations(tiny_model, PROMPTS, LABELS, layers=[1], positions=slice(1, -1), progress=False)
    named = collect_activations(tiny_model, [PROMPTS[i] for i in (0, 3, 4)], ["a", "b", "a"], layers=[0], positions="w2", progress=False)
    given = collect_activations(tiny_model, PROMPTS, LABELS, layers=[1], positions=[[1], [1, 2], [0], [3], [2, 4]], progress=False)
    every = collect_activations(tiny_model, PROMPTS, LABELS, layers=[0], positions="all", progress=False)
    assert last.classes == ["a", "b"] and last.y.tolist() == [0, 1, 0, 1, 0] and last.layers == [0, 1]
    for i, ref in enumerate(reference):
        r0, r1 = ref["blocks.0.hook_resid_post"][0], ref["blocks.1.hook_resid_post"][0]
        torch.testing.assert_close(last.x(1)[i], r1[-1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(last.x(0)[i], r0[-1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(span.x(1)[i], r1[1:-1].mean(0), atol=1e-5, rtol=1e-5)  # BOS counted as position 0
        torch.testing.assert_close(given.x(1)[i], r1[[[1], [1, 2], [0], [3], [2, 4]][i]].mean(0), atol=1e-5, rtol=1e-5)
        n = len(r0)
        torch.testing.assert_close(every.features[0][i, :n], r0, atol=1e-5, rtol=1e-5)
        assert every.mask[i].sum() == n
    for j, i in enumerate((0, 3, 4)):
        pos = PROMPTS[i].split().index("w2") + 1
        torch.testing.assert_close(named.x(0)[j], reference[i]["blocks.0.hook_resid_post"][0, pos], atol=1e-5, rtol=1e-5)


def test_spilled_dataset_equals_in_memory(tiny_model, tmp_path):
    memory = collect_activations(tiny_model, PROMPTS, LABELS, positions=slice(0, None), progress=False)
    disk = collect_activations(tiny_model, PROMPTS, LABELS, positions=slice(0, None), memory_budget=0, spill_dir=tmp_path, progress=False)
    assert disk.cache[0].spilled  # the cache spilled
    for a, b in zip(memory.features, disk.features):
        torch.testing.assert_close(a, b)
    z = collect_activations(tiny_model, PROMPTS, LABELS, site="z", layers=[1], progress=False)
    assert z.d == 4 * 8  # heads flattened


def test_bad_input(tiny_model):
    with pytest.raises(ShapeMismatchError, match="5 prompts"):
        collect_activations(tiny_model, PROMPTS, LABELS[:-1])
    with pytest.raises(SingleClassError):
        collect_activations(tiny_model, PROMPTS, ["a"] * 5)
    with pytest.raises(UnknownSiteError, match="resid_post"):
        collect_activations(tiny_model, PROMPTS, LABELS, site="resid_psot")
    with pytest.raises(UnknownSiteError):
        collect_activations(tiny_model, PROMPTS, LABELS, site="pattern")
    with pytest.raises(TokenizationError, match="w2"):
        collect_activations(tiny_model, PROMPTS, LABELS, positions="w2")
    with pytest.raises(MechinterpError, match="NaN"):
        collect_activations(tiny_model, PROMPTS, [0.5, 1.5, float("nan"), 2.5, 0.1])


def test_read_labelled_csv(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,label,type\nw1 w2,1,x\nw3 w4,0,y\n")
    texts, labels, types = read_labelled_csv(path)
    assert texts == ["w1 w2", "w3 w4"] and labels == [1, 0] and types == ["x", "y"]
    (tmp_path / "bad.csv").write_text("sentence,y\nw1,1\n")
    with pytest.raises(MechinterpError, match="'text' and 'label'"):
        read_labelled_csv(tmp_path / "bad.csv")
