"""``mechinterp steer`` with no options: the sentiment vector flips held-out negative reviews, a random one does not."""

from __future__ import annotations

import json

from mechinterp.cli import main
from mechinterp.lens import SteeringSweep, SteeringVector


def test_steer_with_no_options(tmp_path, capsys):
    assert main(["steer", "--out", str(tmp_path)]) == 0
    assert "flipped" in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["task"], summary["target"], summary["other"]) == ("sentiment", "positive", "negative")
    assert summary["baseline_success"] == 0.0  # unsteered, the model reads every held-out negative review as negative
    assert summary["best_success"] >= 0.8 and summary["random_success_at_best"] <= 0.2
    assert summary["example_steered"].split()[-1] == "positive"
    sweep = SteeringSweep.load(tmp_path / "sweep.json")
    assert sweep.best() == (summary["best_layer"], summary["best_scale"], summary["best_success"])
    vector = SteeringVector.load(tmp_path / "vector.json")
    assert vector.hook == f"blocks.{summary['best_layer']}.hook_resid_post"
    assert abs(vector.norm - summary["vector_norm"]) < 1e-4


def test_steer_refuses_a_task_without_two_labels(tmp_path, capsys):
    assert main(["steer", "--task", "ioi", "--out", str(tmp_path)]) == 2
    assert "two" in capsys.readouterr().err
