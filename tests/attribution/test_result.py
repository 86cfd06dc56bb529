"""TokenAttribution: serialisation, rendering, tables, top-k; side-by-side comparison."""

from __future__ import annotations

import torch

from mechinterp.attribution import TokenAttribution, attribute, comparison_html, plot_comparison


def test_roundtrip_render_and_tables(tiny_model, tmp_path):
    res = attribute(tiny_model, "w1 w2 w3", "w4", method="ig", n_steps=8, warn=False)
    back = TokenAttribution.load(res.save(tmp_path / "r.json"))
    torch.testing.assert_close(back.scores, res.scores)
    assert back.metadata["convergence_delta"] == res.metadata["convergence_delta"] and back.tokens == res.tokens
    html = res.to_html()
    assert "w2" in html and "http" not in html and "<script" not in html
    assert res.to_page().startswith("<!DOCTYPE html>")
    df = res.to_dataframe()
    assert list(df.columns) == ["target", "position", "token", "score", "rank", "method"] and len(df) == 4
    top = res.top_k(2)
    assert top[0][2] >= top[1][2] and res.plot() is not None


def test_heatmap_and_comparison(tiny_model):
    from mechinterp.attribution import Continuation

    gen = attribute(tiny_model, "w1 w2 w3", Continuation("w4 w5"), method="gradient_x_input", warn=False)
    assert gen.plot() is not None
    a = attribute(tiny_model, "w1 w2 w3", "w4", method="saliency", warn=False)
    b = attribute(tiny_model, "w1 w2 w3", "w4", method="occlusion", warn=False)
    assert plot_comparison([a, b]) is not None and "occlusion" in comparison_html([a, b])
