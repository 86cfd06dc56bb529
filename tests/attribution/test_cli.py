"""``mechinterp attribute`` end to end on a saved copy of the tiny model."""

from __future__ import annotations

import json

from mechinterp.cli import main


def test_cli_writes_json_and_html(tiny_model, tmp_path, capsys):
    from mechinterp.zoo import save_model

    folder = save_model(tiny_model, tmp_path / "tiny")
    out = tmp_path / "out"
    code = main(["attribute", "--model", str(folder), "--prompt", "w1 w2 w3", "--target", "w4|w5",
                 "--method", "occlusion", "--method", "shapley", "--faithfulness", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["method"] for r in summary["results"]] == ["occlusion", "shapley"]
    assert "faithfulness" in summary["results"][0]
    html = (out / "attribution.html").read_text()
    assert "side by side" in html and "http" not in html
    assert "top:" in capsys.readouterr().out
    assert main(["attribute", "--model", str(folder), "--prompt", "w1", "--target", "w4 w5", "--out", str(out)]) == 2
