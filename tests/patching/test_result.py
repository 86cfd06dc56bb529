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
