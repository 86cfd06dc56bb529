"""The circuit report: every section present, offline, and rendering in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mechinterp.report import SECTIONS, build_report

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OFFLINE_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    return build_report("zoo:toy-lm", "ioi", tmp_path_factory.mktemp("report"), n=12, log=lambda _: None)


def test_every_section_and_no_external_reference(report):
    from mechinterp.attention import external_references

    page = report.read_text()
    for key in SECTIONS:
        assert f"<section id='{key}'>" in page
    assert external_references(page) == []
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']https?://""", page)
    data = json.loads((report.parent / "report.json").read_text())
    assert data["task"]["accuracy"] >= 0.95 and data["task"]["metric clean"] > data["task"]["metric corrupted"]
    assert {"resid_pre", "z"} <= set(data["patching"]) and data["circuit"]["faithfulness"]["fractions"]
    assert data["attention"]["circuit_heads"] and len(data["attribution"]) == 2 and data["probes"]


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
