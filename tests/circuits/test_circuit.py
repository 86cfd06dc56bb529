"""Circuit: selections return new objects, JSON round trip, networkx view, drawings, offline HTML."""

from __future__ import annotations

import networkx as nx
import torch

from mechinterp.circuits import Circuit, discover


def test_top_n_and_threshold_do_not_mutate(frac):
    model, task, setup = frac
    c = discover(model, task, "exact", "zero", setup=setup)
    before = c.selected.clone()
    top = c.top_n(3)
    thr = c.threshold(float(c.scores.abs().max()) / 2)
    assert top is not c and top.n_edges == 3 and torch.equal(c.selected, before)
    assert thr.n_edges >= 1 and all(abs(v) >= float(c.scores.abs().max()) / 2 for _, _, v in thr.edges())
    assert [abs(v) for _, _, v in top.edges()] == sorted((abs(v) for _, _, v in c.edges()), reverse=True)[:3]


def test_json_round_trip_and_networkx(frac, tmp_path):
    model, task, setup = frac
    c = discover(model, task, "eap", "zero", setup=setup).top_n(5)
    back = Circuit.from_json(c.to_json())
    assert torch.equal(back.scores, c.scores) and torch.equal(back.selected, c.selected) and back.method == "eap"
    loaded = Circuit.load(c.save(tmp_path / "c.json"))
    assert loaded.edges() == c.edges()
    dg = c.to_networkx()
    assert isinstance(dg, nx.DiGraph) and set(dg.nodes) == set(c.nodes()) and dg.has_edge("embed", "L1H0")
    assert set(dg["embed"]["L1H0"]["input"]) == {"q", "k"}
    assert c.to_dataframe()["selected"].sum() == 5
    assert sum(c.node_scores().values()) > 0


def test_figures_and_html_are_offline(frac, tmp_path):
    model, task, setup = frac
    c = discover(model, task, "eap", "zero", setup=setup).top_n(5)
    svg = c.save_figure(tmp_path / "g.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert c.save_figure(tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    html = c.to_html()
    assert "data:image/png;base64" in html and "L1H0" in html and "http" not in html


def test_plot_of_a_30_layer_9_head_circuit_is_readable():
    """SmolLM2's shape: all 123k edges selected; the drawing shows the top 40 on the rows they touch, at a bounded size."""
    from mechinterp.circuits import Circuit, Graph

    g = Graph.build(30, 9, n_key_value_heads=3)
    scores = torch.rand(g.real.shape, generator=torch.Generator().manual_seed(0)) * g.real
    c = Circuit(graph=g, scores=scores, selected=g.real.clone(), method="eap", task="ioi")
    top = c.top_n_of_selected(40)
    assert top.n_edges == 40 and bool((top.selected <= c.selected).all())
    assert top.scores[top.selected].min() >= c.scores[c.selected & ~top.selected].max()
    fig = c.plot()
    width, height = fig.get_size_inches()
    assert width <= 14 and height <= 12 and "top 40 of 123211 edges" in fig.axes[0].get_title()
    drawn = {t.get_text() for t in fig.axes[0].texts}
    assert drawn <= set(g.nodes) | {"q", "k", "v", "qk", "qv", "kv", "qkv", "kq", "vq", "vk"} and len(drawn) > 5
    html = c.to_html()
    assert "top 60 by |score|" in html and html.count("<tr") <= 62
    small = c.top_n(3)
    assert "3 edges" in small.plot().axes[0].get_title()


def test_edges_go_around_the_nodes_they_do_not_join():
    # Before: every edge was drawn with the same slight curve, so an edge that skips a row (L0H0 -> L2H0,
    # embed -> MLP2) ran straight through the nodes between (clearance 0.32 node radii; 11 label overlaps).
    from mechinterp.circuits import Graph
    from mechinterp.viz.checks import edge_clearances, layout_problems

    g = Graph.build(3, 3, has_mlp=True)
    scores = torch.randn(g.real.shape, generator=torch.Generator().manual_seed(0)) * g.real
    c = Circuit(graph=g, scores=scores, selected=g.real.clone(), method="eap", task="t").top_n(40)
    fig = c.plot()
    clearance = edge_clearances(fig)
    assert len(clearance) == len(c.to_networkx().edges) and min(clearance) > 1.0, clearance
    assert layout_problems(fig) == []  # q/k/v labels overlap neither each other nor node names
    import matplotlib.pyplot as plt

    plt.close(fig)
