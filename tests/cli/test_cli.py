"""The core subcommands (models, tasks, demo, report) and the CLI's handling of bad input."""

from __future__ import annotations

import json

import pytest

from mechinterp.cli import build_parser, commands, main


def test_every_command_has_help(capsys):
    for name in commands():
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([name, "--help"])
        assert exit_.value.code == 0
        assert "usage: mechinterp" in capsys.readouterr().out


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("attn-only-2l", "toy-lm", "tracr-reverse", "tracr-frac-prevs"):
        assert f"zoo:{name}" in out
    assert main(["models", "--card", "attn-only-2l"]) == 0
    assert "L0H2" in capsys.readouterr().out


def test_tasks_shows_examples(capsys):
    assert main(["tasks", "--model", "zoo:toy-lm"]) == 0
    out = capsys.readouterr().out
    assert "ioi" in out and "->" in out and "facts" in out


def test_demo_writes_accuracies(tmp_path, capsys):
    assert main(["demo", "--model", "zoo:toy-lm", "--n", "8", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = {r["task"]: r for r in summary["tasks"]}
    assert {"ioi", "facts", "sentiment", "greater-than", "induction"} <= set(rows)
    assert rows["facts"]["accuracy"] >= 0.95 and rows["facts"]["metric clean"] > rows["facts"]["metric corrupted"]


def test_bad_input_exits_non_zero_with_one_line(tmp_path, capsys):
    assert main(["report", "--model", "zoo:nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mechinterp report: error: No zoo model named") and "\n" not in err
    assert main(["report", "--model", "zoo:toy-lm", "--task", "nope", "--out", str(tmp_path)]) == 2
    assert "Unknown task 'nope'" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "--model", "zoo:attn-only-2l", "--n", "2", "--out", str(blocker / "sub")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("mechinterp demo: error:") and "\n" not in err
