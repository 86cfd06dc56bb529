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
    lines = capsys.readouterr().err.strip().splitlines()  # the report's progress lines, then the error on one line
    assert lines[-1].startswith("mechinterp report: error: No zoo model named")
    assert all(line.startswith("[report ") for line in lines[:-1])
    assert main(["report", "--model", "zoo:toy-lm", "--task", "nope", "--out", str(tmp_path)]) == 2
    assert "Unknown task 'nope'" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "--model", "zoo:attn-only-2l", "--n", "2", "--out", str(blocker / "sub")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("mechinterp demo: error:") and "\n" not in err


@pytest.mark.parametrize("text,name", [("bf16", "bfloat16"), ("BF16", "bfloat16"), ("fp16", "float16"), ("half", "float16"),
                                       ("fp32", "float32"), ("float32", "float32"), ("bfloat16", "bfloat16")])
def test_dtype_spellings_reach_load(text, name, monkeypatch):
    """Every command that takes --model passes --dtype and --device on to mechinterp.load."""
    import mechinterp
    from mechinterp.cli.common import load_model

    seen = []
    monkeypatch.setattr(mechinterp, "load", lambda model, **kw: seen.append((model, kw)))
    takes_model = [c for c in commands() if "--model" in _help(c)]
    assert {"attention", "attribute", "patch", "circuit", "probe", "report", "demo", "tasks"} <= set(takes_model)
    required = {"attention": ["--prompt", "a b"], "attribute": ["--prompt", "a b", "--target", "c"], "probe": ["--csv", "x.csv"]}
    for command in takes_model:
        args = [command, "--model", "zoo:toy-lm", "--dtype", text, "--device", "cpu", *required.get(command, [])]
        load_model(build_parser().parse_args(args))
    assert seen == [("zoo:toy-lm", {"device": "cpu", "dtype": name})] * len(takes_model)


def _help(command: str) -> str:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    return buffer.getvalue()


def test_bad_dtype_and_device_are_refused_by_the_parser(capsys):
    import torch

    for args, message in ((["--dtype", "int8"], "unknown dtype 'int8'; use fp32, bf16 or fp16"),
                          (["--device", "tpu"], "unknown device 'tpu'; use cpu, cuda or cuda:<index>"),
                          (["--device", "cpu:1"], "unknown device 'cpu:1'")):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(["report", *args])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            build_parser().parse_args(["patch", "--device", "cuda"])
        assert "no CUDA device is available here; use --device cpu" in capsys.readouterr().err


def test_dtype_loads_a_bf16_model(capsys):
    import torch

    from mechinterp.cli.common import load_model

    model = load_model(build_parser().parse_args(["tasks", "--model", "zoo:attn-only-2l", "--dtype", "bf16"]))
    assert model.cfg.dtype == torch.bfloat16 and next(model.parameters()).dtype == torch.bfloat16
