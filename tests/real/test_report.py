"""The real-model tier: the circuit report on SmolLM2-135M-Instruct (30 layers, 9 heads, GQA, BPE).

Runs the report's Python API on the session's model object (no second load) with the
smallest sensible plan, and checks that every section ran and that the figures are sized
for 30 layers.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from dataclasses import replace

import pytest

from mechinterp.report import SECTIONS, build_report
from mechinterp.report.plan import FEW_FRACTIONS, ReportPlan
from mechinterp.viz.figures import MAX_TICK_LABELS
from mechinterp.viz.graph import node_row

pytestmark = pytest.mark.real

DPI = 110  # figure_to_img_tag's default


def png_sizes(html: str) -> list[tuple[int, int]]:
    """(width, height) in pixels of every inline PNG of ``html`` (read from the IHDR chunk)."""
    return [struct.unpack(">II", base64.b64decode(b64[:64])[16:24])
            for b64 in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)]


def section(page: str, key: str) -> str:
    return page.split(f"<section id='{key}'>")[1].split("</section><section id=")[0]


@pytest.fixture(scope="module")
def report(smollm2, tmp_path_factory):
    n_layers = smollm2.cfg.n_layers
    plan = replace(
        ReportPlan.full(n_layers, smollm2.cfg.n_heads, 0, 8),
        patch_n=2, patch_layers=list(range(0, n_layers, 10)) + [n_layers - 1], circuit_n=2, circuit_steps=1,
        circuit_fractions=FEW_FRACTIONS, head_probes=4, attribution_prompts=1, ig_steps=8, explain_prompts=1,
        sae_prompts=48, sae_epochs=3,
    )
    lines: list[str] = []
    page = build_report(smollm2, "ioi", tmp_path_factory.mktemp("report"), n=8, plan=plan, log=lines.append)
    return page.read_text(), json.loads(page.with_suffix(".json").read_text()), lines


def test_every_section_runs_on_smollm2(report, smollm2):
    page, data, lines = report
    assert data.get("errors") is None, data.get("errors")
    for key in [*SECTIONS, "plan"]:
        assert f"<section id='{key}'>" in page
    assert "class='error'" not in page
    assert data["task"]["layers"] == 30 and data["task"]["key/value heads"] == 3 and data["task"]["accuracy"] > 0.5
    assert [k for k in data["timings_s"] if k != "total"] == list(SECTIONS)
    assert sum(" done in " in line for line in lines) == len(SECTIONS)
    # the caller's plan is used as given and the page says so
    assert data["plan"]["patch_n"] == 2 and "given by the caller" in section(page, "plan")
    assert not any(hp.fwd_hooks or hp.bwd_hooks for hp in smollm2.hook_dict.values())
    d = data["dictionary"]  # the SAE leaves the first-token sink out; with its error term the model is unchanged
    assert d["site"] == "blocks.15.hook_resid_post" and d["quality"]["max |logit gap| with error term"] < 1e-4
    assert d["train"] == "48 prompts of the task's train split" and len(d["top_latents"]) == 5


def test_figures_are_sized_for_30_layers(report, smollm2):
    page, data, _ = report
    n_layers = smollm2.cfg.n_layers
    # head detection: one row per layer, at least 0.25 in each, two kinds per row within the 1100 px page
    (width, height), *_ = png_sizes(section(page, "attention"))
    assert height >= 0.25 * n_layers * DPI and width <= 1150
    # the z patching heatmap (layer x head) grows with the layers too
    resid, z = png_sizes(section(page, "patching"))
    assert z[1] >= 0.25 * n_layers * DPI and resid[1] < z[1]
    # the layer x position heatmap has only the planned layers as rows: 4, labelled L0, L10, L20, L29
    assert data["patching"]["resid_pre"]["labels"]["layer"] == ["L0", "L10", "L20", "L29"]
    # the circuit: top-k edges drawn one row per used layer part, so its height follows the used rows, not 30 layers;
    # an interactive SVG whose edges run through no node, with the faithfulness of every size on its slider
    from mechinterp.report.graph import crossings, layout

    edges = [tuple(e) for e in data["circuit"]["top_edges"]]
    used = {node_row(s)[0] for s, _, _ in edges} | {node_row(r)[0] for _, r, _ in edges}
    assert len(edges) == data["plan"]["circuit_top_k"] and len(used) < n_layers
    lay = layout(edges, smollm2.cfg.n_heads)
    assert len(lay.rows) == len(used) and crossings(lay, edges) == []
    svg = re.search(r"<svg[^>]*class='cgraph' width='(\d+)' height='(\d+)'", section(page, "circuit"))
    assert svg and int(svg.group(1)) <= 1100 and abs(int(svg.group(2)) - lay.height) <= 1
    assert len(data["circuit"]["size_faithfulness"]) == len(data["circuit"]["sizes"]) >= 2
    assert "What was found" in page and "Caveats: only 8 prompts" in page
    assert MAX_TICK_LABELS >= n_layers  # every layer of a 30-layer model keeps its own label
