"""Static matplotlib figures (PNG/SVG) and their inline embedding in HTML."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["heatmap", "figure_to_img_tag"]


def _pyplot() -> Any:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("module://matplotlib_inline.backend_inline", "nbagg", "widget"):
        matplotlib.use("Agg")
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
) -> Any:
    """A labelled heatmap; diverging and centred at 0 when ``center`` (the default).

    Returns:
        The matplotlib figure.
    """
    plt = _pyplot()
    data = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix, dtype=float)
    if ax is None:
        height = max(2.5, 0.3 * data.shape[0] + 1.2)
        width = max(3.5, 0.4 * data.shape[1] + 1.5)
        fig, ax = plt.subplots(figsize=(min(width, 14), min(height, 12)))
    else:
        fig = ax.figure
    if center:
        bound = float(np.nanmax(np.abs(data))) if data.size else 1.0
        image = ax.imshow(data, cmap=cmap or "RdBu_r", vmin=-bound or -1, vmax=bound or 1, aspect="auto")
    else:
        image = ax.imshow(data, cmap=cmap or "viridis", aspect="auto")
    if row_labels is not None:
        ax.set_yticks(range(len(row_labels)), labels=list(row_labels), fontsize=8)
    if col_labels is not None:
        ax.set_xticks(range(len(col_labels)), labels=list(col_labels), fontsize=8, rotation=90)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if colorbar:
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def figure_to_img_tag(fig: Any, fmt: str = "png", dpi: int = 110, close: bool = True) -> str:
    """An ``<img>`` tag with the figure inlined as base64 (PNG) or inline ``<svg>``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight")
    if close:
        _pyplot().close(fig)
    if fmt == "svg":
        return buffer.getvalue().decode()
    return f"<img alt='figure' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"
