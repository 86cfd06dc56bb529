"""Static matplotlib figures (PNG/SVG) and their inline embedding in HTML."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["heatmap", "heatmap_grid", "figure_to_img_tag", "pyplot", "thinned_ticks", "MAX_TICK_LABELS"]

#: at most this many tick labels per heatmap axis (8-point labels stay legible at ~0.2 in each)
MAX_TICK_LABELS = 40


def pyplot() -> Any:
    """``matplotlib.pyplot``, imported on first use, on whatever backend the user has.

    The backend is never switched here (``matplotlib.use`` would change the user's for the whole
    process): matplotlib itself picks Agg where there is no display, a notebook keeps its inline
    backend, and every figure this package renders to HTML is closed after rendering.
    """
    import matplotlib.pyplot as plt

    return plt


def heatmap(
    matrix: Any,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    *,
    ax: Any = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    cmap: str | None = None,
    center: bool = True,
    colorbar: bool = True,
    cbar_label: str = "",
    vmin: float | None = None,
    vmax: float | None = None,
) -> Any:
    """A labelled heatmap; diverging and centred at 0 when ``center`` (the default).

    Args:
        cbar_label: what the colours mean (the colour bar's label).
        vmin, vmax: colour limits when not ``center`` (e.g. 0 and 1 for probabilities; default: the data's).

    Returns:
        The matplotlib figure.
    """
    plt = pyplot()
    data = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix, dtype=float)
    if ax is None:
        height = max(3.0 if cbar_label else 2.5, 0.3 * data.shape[0] + 1.2)
        # wide enough that the title stays over its own axes (not over the colour bar's ticks)
        width = max(3.5, 0.4 * data.shape[1] + 1.5, 0.085 * max(map(len, title.splitlines() or [""])) + 2.4)
        fig, ax = plt.subplots(figsize=(min(width, 14), min(height, 12)))
    else:
        fig = ax.figure
    if center:
        bound = float(np.nanmax(np.abs(data))) if data.size else 1.0
        image = ax.imshow(data, cmap=cmap or "RdBu_r", vmin=-bound or -1, vmax=bound or 1, aspect="auto")
    else:
        image = ax.imshow(data, cmap=cmap or "viridis", aspect="auto", vmin=vmin, vmax=vmax)
    if row_labels is not None:
        ticks = thinned_ticks(len(row_labels))
        ax.set_yticks(ticks, labels=[str(row_labels[i]) for i in ticks], fontsize=8)
    if col_labels is not None:
        ticks = thinned_ticks(len(col_labels))
        ax.set_xticks(ticks, labels=[str(col_labels[i]) for i in ticks], fontsize=8, rotation=90)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if colorbar:
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).set_label(cbar_label, fontsize=8)
    fig.tight_layout()
    return fig


def heatmap_grid(
    matrices: Sequence[Any],
    titles: Sequence[str],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    ylabel: str = "",
    xlabel: str = "",
    ncols: int | None = None,
    outline: Sequence[Sequence[tuple[int, int]]] | None = None,
) -> Any:
    """Same-shape heatmaps in a grid (``ncols`` per row) with one colour scale, sized by their cells.

    Each panel gets about 0.28 in per cell (8-point tick labels fit; past
    :data:`MAX_TICK_LABELS` rows only every k-th label is written), so a 30-layer × 9-head
    panel is about 10 in tall and 3.7 in wide: two per row fit a 1,100-pixel page at 110 dpi
    without shrinking.

    Args:
        outline: per panel, ``(row, col)`` cells to outline and label with their value
            (e.g. the top heads).

    Returns:
        The matplotlib figure.

    Example:
        >>> fig = heatmap_grid([np.zeros((30, 9))] * 4, list("abcd"), [f"L{i}" for i in range(30)], list("012345678"), ncols=2)
        >>> [round(x) for x in fig.get_size_inches()]
        [8, 20]
    """
    plt = pyplot()
    data = [np.asarray(m.detach().float().cpu() if hasattr(m, "detach") else m, dtype=float) for m in matrices]
    n_rows, n_cols = data[0].shape
    ncols = min(len(data), ncols or len(data))
    grid_rows = -(-len(data) // ncols)
    panel_w = max(2.2, 0.28 * n_cols + 1.2)
    panel_h = min(16.0, max(2.5, 0.28 * min(n_rows, 2 * MAX_TICK_LABELS) + 1.6))
    fig, axes = plt.subplots(grid_rows, ncols, figsize=(panel_w * ncols + 0.8, panel_h * grid_rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[len(data):]:
        ax.axis("off")
    lo = vmin if vmin is not None else float(np.nanmin([np.nanmin(d) for d in data]))
    hi = vmax if vmax is not None else float(np.nanmax([np.nanmax(d) for d in data]))
    image = None
    for i, (ax, matrix, title) in enumerate(zip(flat, data, titles)):
        image = ax.imshow(matrix, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        ticks = thinned_ticks(n_rows)
        ax.set_yticks(ticks, labels=[str(row_labels[t]) for t in ticks], fontsize=8)
        cols = thinned_ticks(n_cols)
        ax.set_xticks(cols, labels=[str(col_labels[t]) for t in cols], fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        if i % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        for r, c in (outline[i] if outline is not None else []):
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="crimson", linewidth=1.2))
            ax.text(c, r, f"{matrix[r, c]:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if (matrix[r, c] - lo) < 0.6 * (hi - lo) else "black")
    fig.colorbar(image, ax=flat[: len(data)], fraction=0.03, pad=0.02)
    return fig


def thinned_ticks(n: int, most: int = MAX_TICK_LABELS) -> list[int]:
    """Tick positions: every label up to ``most``, else every k-th (and the last) so they stay legible.

    Example:
        >>> thinned_ticks(5), thinned_ticks(100, most=40)[:4]
        ([0, 1, 2, 3, 4], [0, 3, 6, 9])
    """
    step = max(1, -(-n // most))
    ticks = list(range(0, n, step))
    if ticks and ticks[-1] != n - 1 and step > 1 and n - 1 - ticks[-1] >= step // 2:
        ticks.append(n - 1)
    return ticks


def figure_to_img_tag(fig: Any, fmt: str = "png", dpi: int = 110, close: bool = True) -> str:
    """An ``<img>`` tag with the figure inlined as base64 (PNG) or inline ``<svg>``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight")
    if close:
        pyplot().close(fig)
    if fmt == "svg":
        return buffer.getvalue().decode()
    return f"<img alt='figure' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"
