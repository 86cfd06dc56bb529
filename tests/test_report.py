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
    assert data["explain"]["counterfactual"]["prompts"] == 3 and data["explain"]["words"]["sentences"]
    assert any(f["section"] == "explain" for f in data["findings"])


def test_progress_has_a_start_and_an_end_line_per_section_in_order(report, logged):
    for i, title in enumerate(SECTIONS.values(), start=1):
        start = [k for k, line in enumerate(logged) if f"] {i}/{len(SECTIONS)} {title}:" in line and line.endswith("...")]
        end = [k for k, line in enumerate(logged) if f"] {i}/{len(SECTIONS)} {title} done in " in line]
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
    assert f"4/{len(SECTIONS)} Discovered circuit FAILED after" in err and "1 section(s) failed" in err and "circuit: MechinterpError" in err
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


INTERACT = """
<script>
(function(){
  var out = {}, root = document.getElementById('circuit-graph');
  var slider = root.querySelector('.cslider');
  var visible = function(sel){ return Array.prototype.filter.call(root.querySelectorAll(sel),
                                      function(e){ return e.style.display !== 'none'; }).length; };
  out.edges_max = visible('.cedge'); out.status_max = root.querySelector('.cstatus').textContent;
  slider.value = 0; slider.dispatchEvent(new Event('input'));
  out.edges_min = visible('.cedge'); out.nodes_min = visible('.cnode'); out.status_min = root.querySelector('.cstatus').textContent;
  slider.value = slider.max; slider.dispatchEvent(new Event('input'));
  var node = Array.prototype.filter.call(root.querySelectorAll('.cnode'), function(n){
    return /^L\\d+H\\d+$/.test(n.getAttribute('data-node')); })[0];
  node.dispatchEvent(new MouseEvent('click', {bubbles: true}));
  out.clicked = node.getAttribute('data-node'); out.panel = root.querySelector('.cpanel').innerHTML;
  root.querySelector('.cedge').dispatchEvent(new MouseEvent('mouseenter'));
  out.hover = root.querySelector('.chover').textContent;
  var pre = document.createElement('pre'); pre.id = 'selftest'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is absent: `apt-get install -y chromium` (Debian) to run the browser test")
def test_renders_in_headless_chromium_offline(report, tmp_path):
    import html

    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    base = [CHROMIUM, *OFFLINE_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([*base, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for key in [*SECTIONS, "summary", "plan"]:
        assert f'id="{key}"' in dom.stdout, f"section {key} missing from the rendered page"
    assert "Head Selector" in dom.stdout or "Head selector" in dom.stdout  # circuitsvis rendered offline
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
    assert not console_errors, console_errors
    # the graph's slider, a node click and an edge hover change what is shown (events dispatched in the page)
    probe = tmp_path / "interact.html"
    probe.write_text(report.read_text().replace("</body>", INTERACT + "</body>"))
    run = subprocess.run([*base, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="selftest">(.*?)</pre>', run.stdout, re.S)
    assert found, run.stderr[-2000:]
    out = json.loads(html.unescape(found.group(1)))
    data = json.loads((report.parent / "report.json").read_text())["circuit"]
    assert out["edges_max"] == data["sizes"][-1] and out["edges_min"] == data["sizes"][0] < out["edges_max"]
    assert out["nodes_min"] == 2 and f"{data['size_faithfulness'][0]:.3f}" in out["status_min"]
    assert f"{data['sizes'][-1]} edges; faithfulness {data['size_faithfulness'][-1]:.3f}" in out["status_max"]
    assert out["clicked"] in out["panel"] and "activation patching (z)" in out["panel"] and "<svg" in out["panel"]
    assert "score" in out["hover"] and "→" in out["hover"]
    shot = artifacts / "report.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1400,4000", report.as_uri()], capture_output=True, timeout=180)
    assert shot.exists() and shot.stat().st_size > 20_000


def test_the_page_opens_with_findings_linked_to_their_sections(report):
    page = report.read_text()
    data = json.loads((report.parent / "report.json").read_text())
    summary = page.split("<section id='summary'>")[1].split("</section>")[0]
    assert page.index("<section id='summary'>") < page.index("<section id='plan'>") < page.index("<section id='task'>")
    for section in ("task", "patching", "circuit", "attribution", "probes"):
        assert f"href='#{section}'" in summary, section
    sentences = {f["section"]: f["text"] for f in data["findings"]}
    t = data["task"]
    assert f"{t['metric clean']:.2f} on the clean prompts" in sentences["task"]
    assert f"faithfulness {data['circuit']['shown_faithfulness']:.2f}" in page and "Caveats: only 12 prompts" in summary
    # the top head by patching, with its direct effect and interval
    head, value = max(data["patching"]["head_effects"].items(), key=lambda kv: abs(kv[1]))
    assert f"{head} ({value:+.2f}; direct effect" in sentences["patching"]


def test_captions_say_which_prompts_and_legends_explain_colours(report):
    page = report.read_text()
    data = json.loads((report.parent / "report.json").read_text())
    patching = page.split("<section id='patching'>")[1].split("</section>")[0]
    p = data["patching"]
    if p["prompts"] < data["task"]["prompts"]:  # a subset: said, with the whole task's numbers beside it
        assert f"{p['prompts']} of the {data['task']['prompts']} prompts of {p['length']} tokens" in patching
        assert "are a subset" in patching and f"{data['task']['metric clean']:.3g}" in patching
    assert f"corrupted {p['corrupted']:.3g}, clean {p['clean']:.3g}" in patching and "metric metric" not in page
    assert page.count("class='caption'") >= 7
    circuit = page.split("<section id='circuit'>")[1].split("</section>")[0]
    assert "Legend." in circuit and "query (q)" in circuit and "key (k)" in circuit and "value (v)" in circuit
    assert "Colour scale." in page.split("<section id='attribution'>")[1]


def test_probes_at_chance_are_not_reported_as_a_best_layer(report):
    data = json.loads((report.parent / "report.json").read_text())
    verdict = data["probes"]["verdict"]
    page = report.read_text().split("<section id='probes'>")[1].split("</section>")[0]
    assert "best: layer" not in page
    if verdict["above_chance"]:
        assert verdict["low"] > verdict["baseline"] and "decodable" in page
    else:
        assert "at chance" in page and f"{verdict['baseline']:.3f}" in page
    # 12 prompts, 5-fold: every prompt is held out once (not 3 of them)
    assert data["probes"]["n_examples"] == 12


def test_probe_verdict_against_the_majority_baseline():
    from types import SimpleNamespace

    from mechinterp.report.sections import probe_verdict

    sweep = SimpleNamespace(best=lambda: (0, "last", 0.62), layers=[0, 1], positions=["last"], ci_low=[[0.35], [0.3]],
                            ci_high=[[0.85], [0.7]], majority=0.5, chance=0.5, metric="accuracy", n_examples=8, split="holdout")
    v = probe_verdict(sweep)
    assert not v["above_chance"] and v["sentence"].startswith("at chance") and "0.500" in v["sentence"]
    sweep.ci_low = [[0.55], [0.3]]
    assert probe_verdict(sweep)["above_chance"]


def test_model_card_is_rendered_not_raw_markdown(report):
    from mechinterp.report.markdown import markdown_html

    task = report.read_text().split("<section id='task'>")[1].split("</section>")[0]
    card = task.split("<div class='card'>")[1].split("</div>")[0]
    assert "<code>" in card and "`" not in card and "**" not in card
    assert markdown_html("| a | b |\n|---|---|\n| `x` | **2** |") == (
        "<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td><code>x</code></td><td><b>2</b></td></tr>"
        "</tbody></table>")
    assert markdown_html("see [the paper](https://x.org/p)") == "<p>see <span title='https://x.org/p'>the paper</span></p>"


@pytest.mark.parametrize("n_layers,n_heads,n_edges", [(4, 4, 40), (30, 9, 60)])
def test_no_circuit_edge_runs_through_a_node(n_layers, n_heads, n_edges):
    import random

    from mechinterp.report import graph

    rng = random.Random(0)
    senders = ["embed", *(f"L{l}H{h}" for l in range(n_layers) for h in range(n_heads)), *(f"MLP{l}" for l in range(n_layers))]
    receivers = [*(f"L{l}H{h}.{c}" for l in range(n_layers) for h in range(n_heads) for c in "qkv"),
                 *(f"MLP{l}" for l in range(n_layers)), "logits"]

    def depth(name: str) -> float:
        node = name.split(".")[0]
        return -1 if node == "embed" else 1e9 if node == "logits" else (
            int(node[3:]) + 0.5 if node.startswith("MLP") else int(node[1:].split("H")[0]))

    edges = []
    while len(edges) < n_edges:
        s, r = rng.choice(senders), rng.choice(receivers)
        if depth(r) > depth(s):
            edges.append((s, r, rng.uniform(-1, 1)))
    lay = graph.layout(edges, n_heads)
    assert graph.crossings(lay, edges) == []
    # the check can fail: straight lines from sender to receiver do cross nodes here
    straight = graph.GraphLayout(lay.nodes, lay.rows, [[(p[0][0], p[0][0], p[-1][-1], p[-1][-1])] for p in lay.paths],
                                 lay.width, lay.height)
    assert graph.crossings(straight, edges)


def test_direct_logit_attribution_of_the_heads_adds_up_to_the_logit_difference():
    """Heads' direct effects + the other components' (embeddings, MLPs, attention biases) + the unembedding bias
    = the logit difference, per prompt (the final LayerNorm scale taken from the run, as TransformerLens does)."""
    import torch

    import mechinterp
    from mechinterp.report.sections import _direct_logit_attribution, common_length_subset

    model = mechinterp.load("zoo:toy-lm")
    sub = common_length_subset(mechinterp.tasks.load("ioi", model, n=8), 4)
    dla = _direct_logit_attribution(model, sub)
    assert len(dla) == model.cfg.n_layers * model.cfg.n_heads
    heads = torch.tensor(list(dla.values())).sum(0)
    with torch.no_grad():
        logits, cache = model.run_with_cache(sub.clean_tokens)
        rows = torch.arange(len(sub))
        resid, labels = cache.decompose_resid(layer=-1, mode="all", apply_ln=True, return_labels=True)
        resid = resid[:, rows, sub.answer_pos]
        direction = model.W_U[:, sub.correct_tokens] - model.W_U[:, sub.wrong_tokens]
        parts = torch.einsum("cbd,db->cb", resid, direction)
        scale = cache["ln_final.hook_scale"][rows, sub.answer_pos]  # [batch, 1]
        biases = torch.stack([(model.b_O[layer] / scale) @ direction for layer in range(model.cfg.n_layers)]).diagonal(dim1=1, dim2=2)
        others = sum(parts[i] for i, name in enumerate(labels) if not name.endswith("attn_out")) + biases.sum(0)
        unembed_bias = model.b_U[sub.correct_tokens] - model.b_U[sub.wrong_tokens]
    torch.testing.assert_close(heads + others + unembed_bias, sub.metric(logits).float(), atol=1e-3, rtol=1e-4)


def test_lens_section_reads_the_model_and_adds_up(toy_lm):
    """The lens section on ioi: the last lens row is the model's output, the DLA parts add up to the logit difference,
    and the finding names where the answer appears."""
    import torch

    import mechinterp
    from mechinterp.report.findings import findings
    from mechinterp.report.lens_section import first_top_layer, lens_section

    task = mechinterp.tasks.load("ioi", toy_lm, n=12)
    data: dict = {}
    html = lens_section(toy_lm, task, ReportPlan.full(toy_lm.cfg.n_layers, toy_lm.cfg.n_heads, 16, len(task)), data, {})
    lens = data["lens"]
    with torch.no_grad():
        logits = toy_lm(task.clean_tokens)
    rows = torch.arange(len(task))
    p = logits[rows, task.answer_pos].softmax(-1)[rows, task.correct_tokens]
    assert abs(lens["rows"][-1]["p(correct)"] - float(p.mean())) < 1e-5 and lens["rows"][-1]["KL to output"] < 1e-5
    assert lens["dla_sum_gap"] < 1e-4 and abs(lens["mean_target"] - float(task.metric(logits).mean())) < 1e-4
    assert abs(sum(r["mean"] for r in lens["dla"]) - lens["mean_target"]) < 1e-3  # heads, MLPs, embeddings, biases
    assert "Logit lens" in html and "<img" in html
    assert first_top_layer(torch.tensor([[3, 2], [0, 1], [0, 0]]), ["a", "b", "c"]) == "c"
    assert first_top_layer(torch.tensor([[3, 2], [0, 0], [0, 0]]), ["a", "b", "c"]) == "b"
    text = [f["text"] for f in findings({"lens": lens}, {}, {}) if f["section"] == "lens"][0]
    assert text.startswith("Logit lens:") and lens["first_top_row"] in text


def test_explain_section_cites_its_numbers_and_edits_the_causal_word(toy_lm):
    """The explain section on sentiment (two labels; the causal tokens are the sentiment words): every number of every
    sentence is one of the evidence values it cites, the prediction sentence matches the model's output, each
    counterfactual flips the label by editing a ground-truth position, the surrogate's fidelity is a measured share,
    and the finding quotes the counts."""
    import torch

    import mechinterp
    from mechinterp.explain.words import fmt, numbers_in
    from mechinterp.report.explain_section import explain_section, two_labels
    from mechinterp.report.findings import findings

    task = mechinterp.tasks.load("sentiment", toy_lm, n=12)
    assert two_labels(toy_lm, task) == sorted(["positive", "negative"], key=lambda s: toy_lm.to_single_token(s))
    assert two_labels(toy_lm, mechinterp.tasks.load("facts", toy_lm, n=4)) is None
    plan = replace(ReportPlan.full(toy_lm.cfg.n_layers, toy_lm.cfg.n_heads, 12, len(task)), explain_prompts=2, ig_steps=16)
    data: dict = {}
    html = explain_section(toy_lm, task, plan, data, {})
    e = data["explain"]
    for s in e["words"]["sentences"]:
        shown = {fmt(k, e["words"]["evidence"][k]) for k in s["cites"]}
        assert numbers_in(s["text"]) and set(numbers_in(s["text"])) <= shown, s
    with torch.no_grad():
        probs = toy_lm(task.clean_tokens[:1, : int(task.lengths[0])])[0, -1].softmax(-1)
    assert toy_lm.to_single_str_token(int(probs.argmax())) == e["words"]["evidence"]["prediction.token"]
    assert abs(float(probs.max()) - e["words"]["evidence"]["prediction.prob"]) < 1e-5
    cf = e["counterfactual"]
    assert cf["prompts"] == 2 and cf["flipped"] == 2 and cf["ground_truth_prompts"] == 2 and cf["ground_truth_hits"] == 2
    for r in cf["records"]:
        assert r["ground_truth_hit"] == bool(set(r["positions"]) & set(task.ground_truth.positions[r["prompt"]]))
    sur = e["surrogate"]
    assert sur["n_train"] + sur["n_test"] == 12 and sur["fidelity_test"] * sur["n_test"] == round(sur["fidelity_test"] * sur["n_test"])
    assert "Minimal counterfactuals" in html and "Surrogate decision tree" in html
    text = [f["text"] for f in findings({"explain": e}, {}, {}) if f["section"] == "explain"][0]
    assert text.startswith("Counterfactuals:") and "2 of 2 prompts" in text and "2 of 2 edit a ground-truth" in text


def test_explain_section_skips_the_surrogate_without_two_labels_and_scales_with_the_plan(toy_lm):
    """ioi's answers are names: no surrogate, said in the page; IG's warnings are shown; a tight budget cuts
    counterfactual prompts to 1."""
    import mechinterp
    from mechinterp.report.explain_section import explain_section
    from mechinterp.report.plan import plan_report

    task = mechinterp.tasks.load("ioi", toy_lm, n=4)
    plan = replace(ReportPlan.full(toy_lm.cfg.n_layers, toy_lm.cfg.n_heads, 15, len(task)), explain_prompts=1, ig_steps=8)
    data: dict = {}
    html = explain_section(toy_lm, task, plan, data, {})
    assert "skipped" in data["explain"]["surrogate"] and "Surrogate skipped" in html
    # 8 IG steps miss completeness on this prompt: the warning is in the page, not lost on stderr
    assert any("completeness" in w for w in data["explain"]["words"]["warnings"]) and "Warning: Integrated gradients" in html
    assert data["explain"]["counterfactual"]["prompts"] == 1
    tight = plan_report(30, 9, 15, n=32, unit_s=0.3, budget_s=420)
    assert tight.explain_prompts == 1 and any("counterfactual prompts" in r for r in tight.reasons)
    assert ReportPlan.full(2, 4, 8, 16).explain_prompts == 3


def test_a_failing_counterfactual_is_shown_and_the_other_prompts_still_run(toy_lm, monkeypatch):
    """One prompt's counterfactual raises: the section keeps the others, shows the error box, records it in errors."""
    import mechinterp
    import mechinterp.explain
    from mechinterp.errors import MechinterpError
    from mechinterp.report.explain_section import explain_section

    real = mechinterp.explain.counterfactual
    calls = []

    def flaky(model, prompt, *args, **kwargs):
        calls.append(len(calls))
        if len(calls) == 1:
            raise MechinterpError("nothing left to edit (test)")
        return real(model, prompt, *args, **kwargs)

    monkeypatch.setattr(mechinterp.explain, "counterfactual", flaky)
    task = mechinterp.tasks.load("facts", toy_lm, n=4)
    plan = replace(ReportPlan.full(toy_lm.cfg.n_layers, toy_lm.cfg.n_heads, 8, len(task)), explain_prompts=2, ig_steps=8)
    data: dict = {}
    html = explain_section(toy_lm, task, plan, data, {})
    assert data["errors"]["explain"] == [{"prompt": 1, "error": "MechinterpError: nothing left to edit (test)"}]
    cf = data["explain"]["counterfactual"]
    assert cf["prompts"] == 1 and cf["records"][0]["prompt"] == 1 and cf["flipped"] == 1 and cf["ground_truth_hits"] == 1
    assert "class='error'" in html and "nothing left to edit" in html and "1 failed" in html


def test_dictionary_section_trains_on_the_train_split_and_its_top_latents_matter(toy_lm):
    """The dictionary section on ioi: the SAE spliced with its error term leaves the logits unchanged, it is trained
    on the task's train split (not the report's prompts), and patching each top latent alone moves the metric the way
    its attribution says."""
    import mechinterp
    from mechinterp.report.dictionary_section import dictionary_section
    from mechinterp.report.findings import findings
    from mechinterp.report.progress import Progress

    task = mechinterp.tasks.load("ioi", toy_lm, n=12)
    plan = replace(ReportPlan.full(toy_lm.cfg.n_layers, toy_lm.cfg.n_heads, 16, len(task)), sae_prompts=128, sae_epochs=5)
    data: dict = {"seed": 0}
    html = dictionary_section(toy_lm, task, plan, data, {"progress": Progress(1, lambda line: None)})
    d = data["dictionary"]
    assert d["site"] == "blocks.2.hook_resid_post" and d["d_sae"] == 4 * toy_lm.cfg.d_model
    assert d["train"] == "128 prompts of the task's train split" and d["train_tokens"] > 128 * 8
    q = d["quality"]
    assert q["max |logit gap| with error term"] < 1e-5 and q["L0"] <= 8.0
    assert 0.5 < q["explained variance"] <= 1.0 and q["CE loss recovered"] > 0.5
    top = d["top_latents"]
    assert len(top) == 5 and all(abs(a["attribution"]) >= abs(b["attribution"]) for a, b in zip(top, top[1:]))
    agree = sum((r["attribution"] > 0) == (r["patched effect"] > 0) for r in top)
    assert agree >= 4, top  # measured 5 of 5: the first-order ranking is confirmed by exact patching
    assert all(r["fires most on"] and r["promotes"] for r in top)
    assert "Latents the metric depends on" in html and "latent-card" in html
    text = [f["text"] for f in findings({"dictionary": d}, {}, {}) if f["section"] == "dictionary"][0]
    assert text.startswith("Sparse features:") and str(top[0]["latent"]) in text
