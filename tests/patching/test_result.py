"""PatchResult: labels, matrix view, dataframe, JSON round trip, offline HTML."""

from __future__ import annotations

import json

import torch

from mechinterp.patching import PatchResult, activation_patch


def test_round_trip_dataframe_and_html(tiny_model, pair, metric, tmp_path):
    clean, corrupted, _, _ = pair
    r = activation_patch(tiny_model, clean, corrupted, metric, site="z", by="head_position")
    back = PatchResult.load(r.save(tmp_path / "r.json"))
    torch.testing.assert_close(back.values, r.values)
    assert back.dims == r.dims == ("layer", "pos", "head") and back.labels == r.labels and back.normalised
    frame = r.to_dataframe()
    assert len(frame) == 2 * 10 * 4
    row = frame[(frame["layer"] == "L1") & (frame["head"] == "H2") & (frame["pos_index"] == 7)].iloc[0]
    assert row.value == float(r.values[1, 7, 2]) and row.raw == float(r.raw[1, 7, 2])
    matrix, rows, cols = r.to_matrix()
    assert matrix.shape == (8, 10) and rows[6] == "L1H2" and cols[7].startswith("7:")
    assert float(matrix[6, 7]) == float(r.values[1, 7, 2])
    (label, value), *_ = r.top(1)
    assert abs(value) == float(r.values.abs().max())
    html = r.to_html()
    assert "<img" in html and "http" not in html
    assert json.loads((tmp_path / "r.json").read_text())["type"] == "PatchResult"


def _result(values, dims, labels, **kw):
    return PatchResult(values=values, raw=values, dims=dims, labels=labels, site="z", metric="logit_diff", **kw)


def test_caption_says_what_0_and_1_are_with_the_runs_metrics(tiny_model, pair, metric):
    # Before: the caption read "metric metric; base metric -1.262, target metric 13.3" for a task's
    # metric, and did not say which run each number belongs to or what 0 and 1 mean.
    clean, corrupted, _, _ = pair
    r = activation_patch(tiny_model, clean, corrupted, metric, site="resid_pre", by="layer")
    caption = r.caption()
    assert f"0 = the corrupted run ({r.base_value:.4g})" in caption and f"1 = the clean run ({r.target_value:.4g})" in caption
    assert "clean into corrupted" in caption and "resid_pre" in caption
    noising = activation_patch(tiny_model, clean, corrupted, metric, site="resid_pre", by="layer", direction="noising")
    assert f"0 = the clean run ({noising.base_value:.4g})" in noising.caption()
    assert f"1 = the corrupted run ({noising.target_value:.4g})" in noising.caption()
    assert r.caption() in __import__("html").unescape(r.to_html())


def test_task_metric_is_named_in_the_result():
    import mechinterp

    model = mechinterp.load("zoo:attn-only-2l")
    task = mechinterp.tasks.load("induction", model, n=2)
    r = activation_patch(model, task, site="resid_pre", by="layer")
    assert r.metric == "logit_diff" and "mean logit_diff" in r.caption()


def test_heatmap_axes_name_the_axes_drawn_and_are_centred():
    import matplotlib.pyplot as plt

    from mechinterp.viz.checks import is_centred_at_zero, layout_problems

    values = torch.linspace(-0.2, 0.9, 2 * 5 * 3).reshape(2, 5, 3)
    r = _result(values, ("layer", "pos", "head"), {"layer": ["L0", "L1"], "pos": [f"{i}:t" for i in range(5)],
                                                    "head": ["H0", "H1", "H2"]}, base_value=-1.0, target_value=2.0)
    ax = r.plot().axes[0]
    # before: the x label was the last dim ("head") although the columns are positions, no y label
    assert ax.get_xlabel() == "pos" and ax.get_ylabel() == "layer x head"
    assert "0 = corrupted, 1 = clean" in ax.figure.axes[1].get_ylabel()  # the colour bar says what values mean
    assert is_centred_at_zero(ax.images[0]) and layout_problems(ax.figure) == []
    plt.close("all")
