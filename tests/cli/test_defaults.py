"""The CLI's defaults and guard rails: one default model and task, defaults in --help, outputs checked before any work,
errors for inputs that used to run something else, progress lines, options routed to the methods that take them."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import time

import pytest

from mechinterp.cli import build_parser, commands, main
from mechinterp.cli.common import DEFAULT_MODEL, DEFAULT_TASK


def _help(command: str) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    return " ".join(buffer.getvalue().split())  # argparse wraps lines


def test_help_shows_the_defaults_and_an_accurate_seed():
    for command in ("patch", "circuit", "attention", "attribute", "probe", "report", "demo", "explain"):
        text = _help(command)
        assert "--model" in text and f"(default: {DEFAULT_MODEL})" in text, command
        assert "for generated prompts" not in text, command
    patch = _help("patch")
    assert "(default: 32)" in patch and "(default: activation)" in patch and "(default: out/patch)" in patch
    assert "seed of the task's prompt draw" in patch
    circuit = _help("circuit")
    assert "(default: eap-ig-inputs)" in circuit and "(default: 0.8)" in circuit and "(default: 0.25)" in circuit


def test_every_subcommand_parses_with_no_options_and_shares_the_default_model_and_task():
    for command in commands():
        args = build_parser().parse_args([command])
        if hasattr(args, "model"):
            assert args.model == DEFAULT_MODEL, command
        if hasattr(args, "task"):  # a subcommand that needs another kind of task names its own default (steer: TASK)
            own = getattr(importlib.import_module(f"mechinterp.cli.{command}"), "TASK", DEFAULT_TASK)
            assert args.task == own, command


@pytest.mark.parametrize("site,hint", [("foo", ""), ("mpl", "Did you mean 'mlp'?")])
def test_trace_on_a_site_it_cannot_trace_is_an_error_not_resid(site, hint, tmp_path, capsys, monkeypatch):
    import mechinterp

    monkeypatch.setattr(mechinterp, "load", lambda *a, **k: pytest.fail("the site must be refused before loading"))
    assert main(["patch", "--method", "trace", "--site", site, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--site {site!r} cannot be traced" in err and "pass --site resid, mlp or attn" in err and hint in err


def test_trace_window_is_sized_to_the_model(tmp_path, capsys):
    from mechinterp.cli.patch import trace_window

    assert trace_window(4, "mlp") == 1 and trace_window(48, "mlp") == 10 and trace_window(30, "attn") == 6
    assert trace_window(48, "resid") == 1
    out = tmp_path / "trace"
    assert main(["patch", "--task", "facts", "--method", "trace", "--site", "mlp", "--n", "4", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["window"] == 1  # toy-lm has 4 layers: a 10-layer window made every layer the same
    values = json.loads((out / "result.json").read_text())
    assert "wrote" in capsys.readouterr().out and values


@pytest.mark.parametrize("command", ["patch", "circuit", "attention", "attribute", "probe", "report", "demo", "explain"])
def test_an_unwritable_out_fails_before_any_work(command, tmp_path, capsys, monkeypatch):
    import mechinterp

    monkeypatch.setattr(mechinterp, "load", lambda *a, **k: pytest.fail("the output folder must be checked before loading"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([command, "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"mechinterp {command}: error: --out") and "is not a folder this process can write" in err


def test_patch_by_position_uses_one_prompt_length_and_says_so(tmp_path, capsys):
    out = tmp_path / "p"
    # toy-lm IOI prompts of 8 have lengths 15 (5 of them), 16, 16 and 19
    assert main(["patch", "--n", "8", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "using the 5 of 8 prompts of length 15" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 5 and summary["shape"][-1] == 15
    assert not any("<pad>" in str(v) for row in summary["top"] for v in row.values())
    assert main(["patch", "--n", "8", "--all-lengths", "--out", str(out)]) == 0
    assert "puts shorter prompts' padding in the same columns" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["n"] == 8


def test_options_go_to_the_methods_that_take_them(tmp_path, capsys):
    from mechinterp.cli.attribute import route_options
    from mechinterp.errors import MechinterpError

    assert route_options(["ig", "gradient_x_input"], ["n_steps=32"]) == {"ig": {"n_steps": 32}, "gradient_x_input": {}}
    assert route_options(["ig", "occlusion"], ["integrated_gradients.n_steps=8"])["ig"] == {"n_steps": 8}
    with pytest.raises(MechinterpError, match="no chosen method takes 'nope'"):
        route_options(["ig"], ["nope=1"])
    with pytest.raises(MechinterpError, match="Did you mean 'saliency'"):
        route_options(["salency"], [])
    out = tmp_path / "a"
    assert main(["attribute", "--method", "ig", "--method", "gradient_x_input", "--option", "n_steps=8", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["method"] for r in summary["results"]] == ["integrated_gradients", "gradient_x_input"]
    assert summary["target"].count("|") == 1  # the task's correct|wrong answers
    assert "wrote" in capsys.readouterr().out


def test_tasks_on_a_language_model_skip_compiled_programs_and_stay_short(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "tracr-reverse" in line)
    assert "only for its compiled model" in line
    assert max(len(line) for line in out.splitlines()) < 200


def test_misspelled_names_get_a_did_you_mean(tmp_path, capsys):
    assert main(["patch", "--model", "zoo:toy-ml", "--out", str(tmp_path)]) == 2
    assert "Did you mean 'toy-lm'?" in capsys.readouterr().err
    assert main(["patch", "--task", "iio", "--out", str(tmp_path)]) == 2
    assert "Did you mean 'ioi'?" in capsys.readouterr().err
    assert main(["report", "--task", "iio", "--out", str(tmp_path)]) == 2
    assert "Did you mean 'ioi'?" in capsys.readouterr().err


def test_long_steps_print_that_they_are_still_running():
    from mechinterp.report.progress import Progress

    lines: list[str] = []
    progress = Progress(1, lines.append, label="circuit", heartbeat_s=0.05)
    with progress.step("scoring edges (acdc)"):
        time.sleep(0.3)
    assert lines[0].startswith("[circuit") and lines[0].endswith("1/1 scoring edges (acdc) ...")
    assert any("still running" in line for line in lines[1:-1]) and "done in" in lines[-1]
    count = len(lines)
    time.sleep(0.15)
    assert len(lines) == count  # the heartbeat stops with the step


def test_circuit_defaults_keep_a_pruned_circuit_with_its_faithfulness(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["circuit", "--n", "8", "--method", "eap", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ablation"] == "corrupted" and summary["n_edges"] <= 0.25 * summary["n_graph_edges"]
    assert f"faithfulness {summary['faithfulness']:.3f}" in captured.out and "wrote" in captured.out
    assert summary["target_reached"] is (summary["faithfulness"] >= 0.8)
    # the choice is the smallest size tried that reaches the target
    reached = [int(k) for k, f in summary["sizes_tried"].items() if f >= 0.8]
    assert not reached or summary["n_edges"] == min(reached)
    page = (out / "graph.html").read_text()
    assert "input type='range'" in page and "Legend." in page and "scoring edges (eap)" in captured.err


def test_circuit_on_induction_uses_the_random_corruption(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["circuit", "--model", "zoo:attn-only-2l", "--task", "induction", "--method", "eap", "--n", "4",
                 "--top-n", "10", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["corruption"] == "random" and summary["n_edges"] == 10 and summary["faithfulness"] is not None


@pytest.mark.slow
@pytest.mark.parametrize("command", ["models", "tasks", "attention", "attribute", "patch", "circuit", "probe", "demo", "report"])
def test_every_subcommand_runs_with_no_options(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([command]) == 0
    out = capsys.readouterr().out
    if command in ("models", "tasks"):
        assert out.strip()
        return
    folder = tmp_path / ("report" if command == "report" else f"out/{command}")
    written = sorted(p.name for p in folder.iterdir())
    assert written and "wrote" in out and str(folder.relative_to(tmp_path)) in out, (written, out)


def test_families_are_attributes_of_the_package_imported_lazily():
    import subprocess
    import sys

    code = ("import sys, mechinterp; assert 'mechinterp.circuits' not in sys.modules; "
            "f = mechinterp.patching.activation_patch; assert 'mechinterp.patching' in sys.modules; "
            "assert mechinterp.attribution.attribute and mechinterp.circuits.discover and mechinterp.probes.probe_sweep; "
            "assert 'attention' in dir(mechinterp)\n"
            "try:\n    mechinterp.patchng\nexcept AttributeError as err:\n    assert 'Did you mean mechinterp.patching' in str(err)\n"
            "else:\n    raise SystemExit('no error')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_probe_without_a_csv_probes_the_task_label_and_states_the_verdict(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["probe", "--n", "16", "--layers", "0,3", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == "task ioi, label subject_first" and summary["n"] == 16
    printed = capsys.readouterr().out
    assert f"verdict: {summary['verdict']}" in printed
    assert summary["verdict"].startswith("decodable" if summary["above_chance"] else "at chance")
