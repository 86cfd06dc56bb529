"""``mechinterp probe`` on a CSV, with the tiny model standing in for a loaded one."""

from __future__ import annotations

import json

import numpy as np

from mechinterp.cli import main


def test_probe_cli_writes_results(tiny_model, tmp_path, monkeypatch, capsys):
    import mechinterp.cli.probe as probe_cli

    monkeypatch.setattr(probe_cli, "load_model", lambda args: tiny_model)
    rng = np.random.default_rng(0)
    rows = ["text,label"]
    for _ in range(80):
        y = int(rng.integers(2))
        rows.append(" ".join([f"w{rng.integers(0, 5) if y else rng.integers(5, 10)}"] + [f"w{rng.integers(10, 45)}" for _ in range(3)]) + f",{y}")
    csv = tmp_path / "data.csv"
    csv.write_text("\n".join(rows))
    code = main(["probe", "--model", "tiny", "--csv", str(csv), "--site", "resid_post", "--position", "1", "--cv", "4",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n"] == 80 and summary["best_score"] > 0.9  # token identity at position 1 is linear
    assert (tmp_path / "out" / "sweep.html").exists() and (tmp_path / "out" / "sweep.csv").exists()
    assert "selectivity" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nw1 w2,1\nw3,1\n")
    assert main(["probe", "--csv", str(bad), "--out", str(tmp_path / "o2")]) == 2  # single class: clear error
