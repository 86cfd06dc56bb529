"""Offline circuitsvis views: no external references, and they render in headless Chromium offline."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from mechinterp.attention import OfflineView, attention_patterns, circuitsvis_html, external_references
from mechinterp.viz import html_page

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is absent: install Debian's chromium package (apt-get install -y chromium) to run the offline render test",
)


def test_external_reference_detector():
    assert external_references("<script src='https://unpkg.com/x.js'></script>")
    assert external_references('<link rel="stylesheet" href="http://a.b/c.css">')
    assert external_references('<script type="module">import { render } from "https://unpkg.com/circuitsvis/esm.js";</script>')
    assert external_references("<style>@import url('https://fonts.example/x.css');</style>")
    assert not external_references("<script>var a = 'see https://example.com for docs';</script>")


def test_circuitsvis_cdn_version_is_online_ours_is_not():
    import circuitsvis

    rendered = circuitsvis.tokens.colored_tokens(["a", "b"], [0.1, 0.9])
    assert external_references(str(rendered))  # the pitfall we avoid
    view = OfflineView.from_components([("ColoredTokens", {"tokens": ["a", "b"], "values": [0.1, 0.9]})])
    assert external_references(view.html) == []
    assert view.html.count("var CircuitsVis=") == 1 and "sourceMappingURL" not in view.html


def test_bundle_inlined_once_per_page_and_tokens_escaped():
    comps = [("ColoredTokens", {"tokens": ["</script>", "b"], "values": [0.1, 0.9]})] * 3
    html = circuitsvis_html(comps)
    assert html.count("var CircuitsVis=") == 1 and html.count("CircuitsVis.render(") == 3
    assert html.count("</script>") == 1  # the token cannot close the script early


def test_notebook_repr_makes_no_request(tiny_model, no_network):
    pats = attention_patterns(tiny_model, "w1 w2 w3 w1 w2")
    for obj in (pats, pats.view_layer(0), pats.view_head(1, 2), pats.view_query(1, 0, -1)):
        html = obj._repr_html_()  # would raise OSError under no_network if it pinged a host
        assert "CircuitsVis.render" in html and external_references(html) == []


def _chromium(url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'profile'}",
        # network off: no name resolves and every connection goes to a closed port
        "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
        f"--log-net-log={tmp / 'net.json'}", "--virtual-time-budget=5000", *extra, url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _page_requests(net_log: Path) -> list[str]:
    """http(s) requests the page made (Chromium's own service requests have no origin)."""
    data = json.loads(net_log.read_text())
    start = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        e["params"]["url"] for e in data["events"]
        if e["type"] == start and e["params"].get("url", "").startswith("http")
        and e["params"].get("initiator") != "not an origin"
    ]


def _filled_views(dom: str) -> tuple[int, int]:
    divs = re.findall(r'<div id="mi-cv-[0-9a-f]+" class="mi-circuitsvis"[^>]*>(.{0,20})', dom)
    return len(divs), sum(1 for after in divs if not after.startswith("</div>"))


@needs_chromium
def test_saved_page_renders_offline_in_chromium(tiny_model, tmp_path):
    pats = attention_patterns(tiny_model, "w1 w2 w3 w4 w1 w2 w3")
    body = pats.to_html() + pats.view_head(1, 2).html + pats.view_query(1, None, -1).html
    page = tmp_path / "attention.html"
    page.write_text(html_page("attention", body))
    assert external_references(page.read_text()) == []

    shot = tmp_path / "shot.png"
    run = _chromium(page.as_uri(), tmp_path / "a", "--dump-dom", f"--screenshot={shot}", "--window-size=1100,1400")
    dom = run.stdout
    n_views, n_filled = _filled_views(dom)
    assert n_views == 4 and n_filled == 4, dom[:2000]  # 2 layers + 1 head + 1 query view, all drawn
    assert "Head Selector" in dom  # AttentionHeads rendered its React tree
    assert dom.count("<canvas") >= 2 + 8  # thumbnails and the pattern heatmaps
    assert _page_requests(tmp_path / "a" / "net.json") == []

    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] > 100 and pixels[..., :3].std() > 0.01  # something was drawn


@needs_chromium
def test_control_cdn_page_stays_empty_and_requests_the_network(tmp_path):
    # The same check on circuitsvis's CDN version: it asks for unpkg.com and draws nothing offline,
    # so the test above would catch a page that depends on the network.
    import circuitsvis

    cdn = str(circuitsvis.tokens.colored_tokens(["a", "b"], [0.1, 0.9]))
    page = tmp_path / "cdn.html"
    page.write_text(html_page("cdn", cdn))
    dom = _chromium(page.as_uri(), tmp_path / "c", "--dump-dom").stdout
    assert "unpkg.com" in " ".join(_page_requests(tmp_path / "c" / "net.json"))
    assert re.search(r'<div id="circuits-vis-[^"]+" style="[^"]*">\s*<script', dom)  # nothing rendered

