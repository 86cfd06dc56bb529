"""``mechinterp patch`` writes JSON, CSV, PNG and HTML and prints the top entries."""

from __future__ import annotations

import json

from mechinterp.cli import main


def test_cli_patch_writes_outputs(tmp_path, capsys):
    out = tmp_path / "p"
    code = main(["patch", "--model", "zoo:attn-only-2l", "--task", "induction", "--n", "4", "--site", "z", "--by", "head", "--out", str(out)])
    assert code == 0
    for name in ("result.json", "result.csv", "result.png", "index.html", "summary.json"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dims"] == ["layer", "head"] and summary["shape"] == [2, 4]
    assert "activation patching of z" in capsys.readouterr().out


def test_cli_bad_site_exits_2(tmp_path, capsys):
    code = main(["patch", "--model", "zoo:attn-only-2l", "--task", "induction", "--n", "2", "--site", "nope", "--out", str(tmp_path)])
    assert code == 2 and "Unknown patching site" in capsys.readouterr().err
