"""The circuit report: every section present, no external reference; the CLI writes it."""

from __future__ import annotations

import argparse
import json
import re

from mechinterp.circuits import circuit_report, discover, node_patching_effects


def _external(html: str) -> list[str]:
    refs = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]+)""", html) + re.findall(r"url\(([^)]+)\)", html)
    return [r for r in refs if not r.startswith(("data:", "#"))] + re.findall(r"https?://(?!www\.w3\.org)[^\s'\"<]+", html)


def test_report_sections_and_offline(frac):
    model, task, setup = frac
    circuit = discover(model, task, "exact", "zero", setup=setup).top_n(5)
    html = circuit_report(model, task, circuit, setup=setup)
    for heading in ("Task and model", "Circuit", "reference circuit", "patching effects", "Attention patterns", "Faithfulness"):
        assert heading in html
    assert "L1H0 attention" in html and "CPR" in html and _external(html) == []


def test_node_effects_find_the_circuit_nodes(frac):
    model, task, setup = frac
    effects = node_patching_effects(model, setup, task.metric)
    assert {k for k, v in effects.items() if abs(v) > 1e-6} == {"embed", "MLP0", "L1H0"}


def test_cli_writes_report(tmp_path):
    from mechinterp.cli import circuit as cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    out = tmp_path / "out"
    args = parser.parse_args(["circuit", "--model", "zoo:tracr-frac-prevs", "--task", "tracr-frac-prevs", "--method", "exact",
                              "--ablation", "zero", "--n", "8", "--top-n", "5", "--out", str(out)])
    assert args.handler(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"]["auc"] == 1.0 and summary["n_edges"] == 5 and summary["reference"]["precision"] == 1.0
    assert _external((out / "report.html").read_text()) == []
    assert (out / "circuit.svg").exists() and (out / "circuit.png").exists() and (out / "circuit.json").exists()


def test_report_tables_are_top_k(frac):
    model, task, setup = frac
    circuit = discover(model, task, "exact", "zero", setup=setup)
    html = circuit_report(model, task, circuit, setup=setup, top_k=2)
    assert "table: top 2 of" in html
