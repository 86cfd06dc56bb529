"""Static grids: one panel per (layer, head), saved as PNG and SVG."""

from __future__ import annotations

import pytest
import torch

from mechinterp.attention import plot_pattern_grid, save_figure
from mechinterp.errors import MechinterpError


def test_grid_panels_labels_and_files(tmp_path):
    pats = torch.eye(3).expand(2, 3, 3, 3)
    fig = plot_pattern_grid(pats, ["a", "b", "c"], layer_names=[4, 5])
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels][:4] == ["L4H0", "L4H1", "L4H2", "L5H0"] and len(panels) == 6
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["a", "b", "c"]
    png = save_figure(fig, tmp_path / "grid.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = save_figure(plot_pattern_grid(pats, ["a", "b", "c"]), tmp_path / "grid.svg")
    assert "<svg" in svg.read_text()[:1000]
    with pytest.raises(MechinterpError, match=".png"):
        save_figure(plot_pattern_grid(pats, ["a", "b", "c"]), tmp_path / "grid.jpg")


def test_grid_of_a_30_layer_model_stays_bounded():
    import matplotlib.pyplot as plt

    fig = plot_pattern_grid(torch.eye(5).expand(30, 9, 5, 5), list("abcde"))
    width, height = fig.get_size_inches()
    assert height <= 30.0 + 1e-6 and width <= 10.0  # 2.2-inch panels would make it 66 inches tall
    assert all(not ax.get_yticklabels() for ax in fig.axes if ax.get_title())  # panels too small for labels
    plt.close("all")


@pytest.mark.parametrize("n_tokens", [15, 32])
def test_grid_titles_and_token_labels_do_not_overlap(n_tokens):
    # Before: every panel carried rotated token labels, so each title sat on the labels of the
    # panel above and each row's y labels ran into the panel to its left; 32 tokens were crammed
    # into 2-inch panels, each label on its neighbours.
    import matplotlib.pyplot as plt

    from mechinterp.viz.checks import layout_problems

    words = "<bos> When Martin and Peter went to the school , Martin gave a computer to Peter".split()
    tokens = (words * 3)[:n_tokens]
    fig = plot_pattern_grid(torch.softmax(torch.randn(3, 2, n_tokens, n_tokens), -1), tokens)
    assert layout_problems(fig) == []
    panels = [ax for ax in fig.axes if ax.get_title()]
    shown = [t.get_text() for t in panels[-1].get_xticklabels()]  # the bottom row keeps the token labels
    assert shown == (tokens if n_tokens == 15 else shown) and set(shown) <= set(tokens) and len(shown) >= 15
    assert not any(t.get_text() for t in panels[0].get_xticklabels())
    plt.close(fig)
