"""viz.checks: the layout checks find the defects they exist for (and nothing on a clean figure)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mechinterp.viz import heatmap  # noqa: E402
from mechinterp.viz.checks import is_centred_at_zero, layout_problems, overlapping_texts, texts_over_other_axes  # noqa: E402


def test_clean_heatmap_has_no_problems():
    fig = heatmap(np.array([[1.0, -2.0], [0.5, 0.0]]), ["a", "b"], ["x", "y"], title="t", xlabel="x", ylabel="y")
    assert layout_problems(fig) == []
    assert is_centred_at_zero(fig.axes[0].images[0])
    plt.close(fig)


def test_crammed_labels_and_a_title_over_another_panel_are_found():
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(2, 2))
    top.set_xticks(range(30), labels=[f"token{i}" for i in range(30)])
    bottom.imshow(np.zeros((2, 2)))
    bottom.set_title("a title", pad=40)  # pushed up into the panel above
    assert overlapping_texts(fig)
    assert any(text == "a title" for text, _ in texts_over_other_axes(fig))
    plt.close(fig)


def test_uncentred_limits_are_found():
    fig, ax = plt.subplots()
    image = ax.imshow(np.array([[-1.0, 3.0]]), cmap="RdBu")
    assert not is_centred_at_zero(image)
    image.set_clim(-3, 3)
    assert is_centred_at_zero(image)
    plt.close(fig)
