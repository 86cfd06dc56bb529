"""The circuit report: every section present, offline, rendering in headless Chromium, sized by a plan,
progress on stderr, failed sections shown in the page."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from mechinterp.report import SECTIONS, build_report
from mechinterp.report.plan import ReportPlan

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OFFLINE_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
]


@pytest.fixture(scope="module")
def logged() -> list[str]:
    return []


@pytest.fixture(scope="module")
def report(tmp_path_factory, logged) -> Path:
    return build_report("zoo:toy-lm", "ioi", tmp_path_factory.mktemp("report"), n=12, log=logged.append, budget_s=None)


def test_every_section_and_no_external_reference(report):
    from mechinterp.attention import external_references

    page = report.read_text()
    for key in [*SECTIONS, "plan"]:
        assert f"<section id='{key}'>" in page
    assert external_references(page) == []
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']https?://""", page)
    assert "class='error'" not in page
    data = json.loads((report.parent / "report.json").read_text())
    assert "errors" not in data
    assert data["task"]["accuracy"] >= 0.95 and data["task"]["metric clean"] > data["task"]["metric corrupted"]
    assert {"resid_pre", "z"} <= set(data["patching"]) and data["circuit"]["faithfulness"]["fractions"]
    assert data["attention"]["circuit_heads"] and len(data["attribution"]) == 2 and data["probes"]
    # no budget: the full plan, every layer in the position sweep, and the page says nothing was reduced
    assert data["plan"]["reasons"] == [] and data["plan"]["patch_layers"] == [0, 1, 2, 3]
    assert "Nothing was reduced" in page
    assert data["circuit"]["edges"] and "<h3>Top edges</h3>" in page


def test_progress_has_a_start_and_an_end_line_per_section_in_order(report, logged):
    for i, title in enumerate(SECTIONS.values(), start=1):
        start = [k for k, line in enumerate(logged) if f"] {i}/6 {title}:" in line and line.endswith("...")]
        end = [k for k, line in enumerate(logged) if f"] {i}/6 {title} done in " in line]
        assert len(start) == 1 and len(end) == 1 and start[0] < end[0], (title, logged)
    assert logged[-1].split("] ", 1)[1].startswith("wrote ")
    stamps = [re.match(r"\[report\s+([\d.:]+)s?\]", line).group(1) for line in logged]
    assert len(stamps) == len(logged)


def test_progress_goes_to_stderr_by_default(capsys):
    from mechinterp.report.progress import Progress

    progress = Progress(1)
    with progress.step("Section", "n=3"):
        progress.note("sub-step")
    with pytest.raises(ValueError), Progress(1).step("Broken"):
        raise ValueError("bad")
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0].endswith("1/1 Section: n=3 ...") and lines[1].endswith("sub-step") and "1/1 Section done in" in lines[2]
    assert "1/1 Broken FAILED after" in lines[4] and "ValueError: bad" in lines[4]


def test_a_failing_section_is_shown_in_the_page_and_the_cli_exits_1(tmp_path, monkeypatch, capsys):
    from mechinterp.cli import main
    from mechinterp.errors import MechinterpError
    from mechinterp.report import build

    def broken(*_args):
        raise MechinterpError("grouped key/value heads are not supported (test)")

    monkeypatch.setitem(build._BUILDERS, "circuit", broken)
    # a 1-millisecond budget: the smallest plan whatever the machine's speed; the report still has every section
    assert main(["report", "--model", "zoo:toy-lm", "--n", "8", "--budget", "0.001", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "3/6 Discovered circuit FAILED after" in err and "1 section(s) failed" in err and "circuit: MechinterpError" in err
    page = (tmp_path / "report.html").read_text()
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["errors"] == {"circuit": "MechinterpError: grouped key/value heads are not supported (test)"}
    circuit = page.split("<section id='circuit'>")[1].split("</section>")[0]
    assert "class='error'" in circuit and "This section failed: MechinterpError" in circuit and "grouped key/value" in circuit
    assert "1 section(s) failed" in page and "(failed)" in page
    # the attention section falls back to the patching's top heads and says so
    assert data["attention"]["heads_from"].startswith("patching") and data["attention"]["circuit_heads"]
    assert data["plan"]["reasons"] and "Reduced to fit the time budget" in page
    assert data["plan"]["head_probes"] == 16 and data["plan"]["ig_steps"] == 16 and data["plan"]["patch_n"] == 2
    assert "even the smallest plan" in data["plan"]["reasons"][-1]


def test_device_and_dtype_with_a_loaded_model_are_refused_not_ignored(tiny_model, tmp_path):
    from mechinterp.errors import MechinterpError

    for kwargs in ({"device": "cpu"}, {"dtype": "bf16"}):
        with pytest.raises(MechinterpError, match="already loaded"):
            build_report(tiny_model, "ioi", tmp_path, log=lambda _: None, **kwargs)
    assert not (tmp_path / "report.html").exists()


def test_figures_grow_with_the_number_of_layers():
    import numpy as np

    from mechinterp.viz import edge_graph_figure, heatmap, heatmap_grid

    heights = [heatmap_grid([np.zeros((layers, 9))] * 3, list("abc"), [f"L{i}" for i in range(layers)], list("012345678"))
               .get_size_inches()[1] for layers in (2, 12, 30)]
    assert heights[0] < heights[1] < heights[2] and heights[2] >= 0.25 * 30  # at least ~0.25 in per layer row
    # four kinds two per row: two rows of panels, each ~3.7 in wide, so 1,100 px hold them at 110 dpi
    fig = heatmap_grid([np.zeros((30, 9))] * 4, list("abcd"), [f"L{i}" for i in range(30)], list("012345678"), ncols=2,
                       outline=[[(3, 1)], [], [], []])
    assert fig.get_size_inches()[0] * 110 <= 1100 and fig.get_size_inches()[1] >= 2 * 0.25 * 30
    assert [t.get_text() for t in fig.axes[0].texts] == ["0.00"] and len(fig.axes[0].patches) == 1
    assert heatmap(np.zeros((30, 14))).get_size_inches()[1] >= 0.25 * 30
    # 100 rows: only every 3rd label is written (at most 40), the last is kept
    fig = heatmap(np.zeros((100, 4)), [f"L{i}" for i in range(100)], list("abcd"))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) <= 41 and labels[:2] == ["L0", "L3"] and labels[-1] == "L99"
    # the circuit is drawn one row per *used* layer: 3 edges across layers 0..29 make 4 rows, not 32
    edges = [("embed", "L0H1.v", 0.5), ("L0H1", "L29H3.k", 1.0), ("L29H3", "logits", -2.0)]
    fig = edge_graph_figure(edges)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["embed", "L0 heads", "L29 heads", "logits"]
    assert fig.get_size_inches()[1] < 5


def test_plan_fits_the_budget_and_says_what_it_reduced():
    from mechinterp.report.plan import plan_report

    full = ReportPlan.full(30, 9, 15, 32)
    cost = full.costs()
    # patching: 16 prompts × (15 positions × 30 layers + 30 × 9 heads) × 0.25 + 2 × 16 clean/corrupted runs
    assert cost["patching"] == pytest.approx(16 * (15 * 30 + 270) * 0.25 + 32)
    fast = plan_report(30, 9, 15, 32, unit_s=1e-4, budget_s=420)
    assert fast.reasons == [] and fast == replace(full, unit_s=1e-4, budget_s=420.0)
    slow = plan_report(30, 9, 15, 32, unit_s=0.3, budget_s=420)
    assert slow.total_s() <= 420 < replace(full, unit_s=0.3).total_s()
    assert slow.reasons and all("budget 420 s" in r for r in slow.reasons)
    assert slow.patch_layers[0] == 0 and slow.patch_layers[-1] == 29 and len(slow.patch_layers) < 30
    hopeless = plan_report(30, 9, 15, 32, unit_s=10.0, budget_s=60)
    assert "even the smallest plan" in hopeless.reasons[-1] and hopeless.patch_n == 2 and hopeless.circuit_n == 2
    assert len(hopeless.circuit_fractions) == 5 and len(hopeless.patch_layers) == 5  # every 7th layer and the last
    assert plan_report(30, 9, 15, 32, unit_s=10.0, budget_s=None) == replace(full, unit_s=10.0, budget_s=float("inf"))


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is absent: `apt-get install -y chromium` (Debian) to run the browser test")
def test_renders_in_headless_chromium_offline(report, tmp_path):
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    base = [CHROMIUM, *OFFLINE_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([*base, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for key in SECTIONS:
        assert f'id="{key}"' in dom.stdout, f"section {key} missing from the rendered page"
    assert "Head Selector" in dom.stdout or "Head selector" in dom.stdout  # circuitsvis rendered offline
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
    assert not console_errors, console_errors
    shot = artifacts / "report.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1200,3000", report.as_uri()], capture_output=True, timeout=180)
    assert shot.exists() and shot.stat().st_size > 20_000
