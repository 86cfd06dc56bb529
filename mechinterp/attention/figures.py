"""Static attention figures (matplotlib): a layer × head grid of patterns with token labels.

For papers and reports, where an interactive view will not do. Save with
``fig.savefig("grid.png")`` or ``"grid.svg"``; :func:`save_figure` picks the format from the
suffix and closes the figure.

Example:
    >>> import torch
    >>> fig = plot_pattern_grid(torch.eye(3).expand(1, 2, 3, 3), ["a", "b", "c"])
    >>> len(fig.axes)  # two panels and the colour bar
    3
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float
from torch import Tensor

from mechinterp.viz import pyplot

__all__ = ["plot_pattern_grid", "save_figure"]


def plot_pattern_grid(
    patterns: Float[Tensor, "layer head_index query_pos key_pos"],
    tokens: Sequence[str],
    layer_names: Sequence[int] | None = None,
    head_names: Sequence[int] | None = None,
    *,
    cell_inches: float = 2.2,
    max_labels: int = 40,
    cmap: str = "Blues",
    max_inches: float = 30.0,
) -> Any:
    """One heatmap per (layer, head): rows are layers, columns heads, axes the tokens.

    Args:
        patterns: attention ``[layer, head, query, key]`` of one prompt (no padding).
        tokens: the string tokens (labels; shown when there are at most ``max_labels``).
        layer_names, head_names: numbers written in the panel titles.
        cell_inches: size of one panel, shrunk so that the figure's longer side stays within
            ``max_inches`` (a 30-layer × 9-head grid: 0.97-inch panels, 30 inches tall, no
            token labels below 1.2-inch panels; pick ``layers=``/``heads=`` for a closer look).
        cmap: a sequential colormap (attention is in ``[0, 1]``).

    Returns:
        The matplotlib figure.
    """
    plt = pyplot()
    data = np.asarray(patterns.detach().cpu().float())
    n_layers, n_heads, n_q, n_k = data.shape
    layer_names = list(layer_names) if layer_names is not None else list(range(n_layers))
    head_names = list(head_names) if head_names is not None else list(range(n_heads))
    cell = max(0.5, min(cell_inches, (max_inches - 1.0) / max(n_layers, n_heads)))
    labels = len(tokens) <= max_labels and cell >= 1.2
    # with token labels, constrained layout keeps each title clear of the tick labels of the panel
    # above (labels go on the outer panels only: every panel shares both axes); without labels
    # (small panels, possibly hundreds) fixed spacing does the same far faster
    fig, axes = plt.subplots(n_layers, n_heads, figsize=(cell * n_heads + 1.2, cell * n_layers + 0.8), squeeze=False,
                             layout="constrained" if labels else None)
    if not labels:
        fig.subplots_adjust(left=0.6 / (cell * n_heads + 1.2), right=1 - 1.0 / (cell * n_heads + 1.2),
                            bottom=0.5 / (cell * n_layers + 0.8), top=1 - 0.5 / (cell * n_layers + 0.8), wspace=0.1, hspace=0.25)
    title_size = 9 if cell >= 1.2 else 6
    tokens = list(tokens)
    fit = max(2, int(cell / 0.085))  # 5-point labels need ~0.085 in each: past that, every k-th token is labelled
    kx, qy = _every(min(n_k, len(tokens)), fit), _every(min(n_q, len(tokens)), fit)
    image = None
    for li in range(n_layers):
        for hi in range(n_heads):
            ax = axes[li][hi]
            image = ax.imshow(data[li, hi], cmap=cmap, vmin=0.0, vmax=1.0, aspect="equal")
            ax.set_title(f"L{layer_names[li]}H{head_names[hi]}", fontsize=title_size, pad=2)
            if labels:
                ax.set_xticks(kx, labels=[tokens[i] for i in kx] if li == n_layers - 1 else [], fontsize=5, rotation=90)
                ax.set_yticks(qy, labels=[tokens[i] for i in qy] if hi == 0 else [], fontsize=5)
                ax.tick_params(length=1.5)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.02, label="attention")
    fig.supxlabel("key (source) token", fontsize=9)
    fig.supylabel("query (destination) token", fontsize=9)
    if not labels and len(tokens) > 0:
        why = f"{len(tokens)} tokens" if len(tokens) > max_labels else "panels too small"
        fig.suptitle(f"token labels omitted ({why}); pass layers=/heads= for a closer look", fontsize=7,
                     y=1 - 0.08 / (cell * n_layers + 0.8), va="top")
    return fig


def _every(n: int, most: int) -> list[int]:
    """Every position up to ``most`` of them, else every k-th (from 0) so that at most ``most`` are labelled."""
    return list(range(0, n, max(1, -(-n // most))))


def save_figure(fig: Any, path: str | Path, dpi: int = 150) -> Path:
    """Save ``fig`` as PNG or SVG (from the suffix) and close it."""
    from mechinterp.core.validation import check_writable

    path = check_writable(path, "path")
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        from mechinterp.errors import MechinterpError

        raise MechinterpError(f"Save figures as .png, .svg or .pdf; got {path.name!r}.")
    from mechinterp.core import atomic

    try:
        return atomic.save_figure(fig, path, dpi=dpi, bbox_inches="tight")
    finally:
        pyplot().close(fig)
