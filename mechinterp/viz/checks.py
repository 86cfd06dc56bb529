"""Programmatic checks of a drawn figure: overlapping text, text over other panels, colour limits.

Used by the tests of every ``plot()`` (a figure that a reader would find cluttered fails them),
and usable on your own figures. All checks draw the figure first (``fig.canvas.draw()``) and
compare window extents in display pixels.

Example:
    >>> from mechinterp.viz import heatmap
    >>> from mechinterp.viz.checks import overlapping_texts
    >>> overlapping_texts(heatmap([[1.0, -1.0]], ["a"], ["x", "y"]))
    []
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["drawn_texts", "edge_clearances", "layout_problems", "legends_over_data", "overlapping_texts",
           "texts_over_other_axes", "is_centred_at_zero"]


def _visible(text: Any) -> bool:
    return bool(text.get_visible() and text.get_text().strip() and text.get_alpha() != 0)


def _tick_labels(ax: Any) -> list[Any]:
    """The tick labels matplotlib actually draws (ticks inside the view limits)."""
    out = []
    for axis in (ax.xaxis, ax.yaxis):
        if not axis.get_visible():
            continue
        lo, hi = sorted(axis.get_view_interval())
        span = (hi - lo) or 1.0
        for tick in axis.get_major_ticks() + axis.get_minor_ticks():
            if not tick.get_visible() or not (lo - 1e-9 * span <= tick.get_loc() <= hi + 1e-9 * span):
                continue
            out += [label for label in (tick.label1, tick.label2) if label.get_visible() and _visible(label)]
    return out


def drawn_texts(fig: Any) -> list[tuple[Any, Any]]:
    """Every visible, non-empty text of the figure as ``(text, axes or None)``, after drawing it."""
    fig.canvas.draw()
    out: list[tuple[Any, Any]] = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        own = [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        legend = ax.get_legend()
        if legend is not None:
            own += legend.get_texts()
        out += [(t, ax) for t in own + _tick_labels(ax) if _visible(t)]
    extra = [*fig.texts, *(getattr(fig, name, None) for name in ("_suptitle", "_supxlabel", "_supylabel"))]
    seen: set[int] = set()
    for t in extra:  # suptitle and the sup-labels are also in fig.texts on recent matplotlib
        if t is not None and id(t) not in seen and _visible(t):
            seen.add(id(t))
            out.append((t, None))
    return out


def layout_problems(fig: Any, pad: float = 0.5) -> list[str]:
    """The checks below on one drawing: one readable line per problem (empty when the layout is clean)."""
    texts = drawn_texts(fig)
    return ([f"text {a!r} overlaps text {b!r}" for a, b in overlapping_texts(fig, pad, texts)]
            + [f"text {t!r} lies over panel {k}" for t, k in texts_over_other_axes(fig, pad, texts)]
            + [f"legend covers data of panel {k}" for k in legends_over_data(fig, draw=False)])


def _extent(text: Any, renderer: Any) -> Any:
    return text.get_window_extent(renderer)


def _overlap(a: Any, b: Any, pad: float) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > pad) and (min(a.y1, b.y1) - max(a.y0, b.y0) > pad)


def overlapping_texts(fig: Any, pad: float = 0.5, texts: list[tuple[Any, Any]] | None = None) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose boxes overlap by more than ``pad`` pixels each way.

    Crammed tick labels, a title over the tick labels of the panel above, two edge labels on
    top of each other: all show up here as ``(text, text)`` pairs.
    """
    texts = drawn_texts(fig) if texts is None else texts
    renderer = fig.canvas.get_renderer()
    boxes = [(t, _extent(t, renderer)) for t, _ in texts]
    found = []
    for i, (ta, a) in enumerate(boxes):
        for tb, b in boxes[i + 1:]:
            if _overlap(a, b, pad):
                found.append((ta.get_text(), tb.get_text()))
    return found


def texts_over_other_axes(fig: Any, pad: float = 0.5, texts: list[tuple[Any, Any]] | None = None) -> list[tuple[str, int]]:
    """Texts that overlap the plotting area of a panel they do not belong to, as ``(text, panel index)``."""
    texts = drawn_texts(fig) if texts is None else texts
    renderer = fig.canvas.get_renderer()
    found = []
    for text, owner in texts:
        box = _extent(text, renderer)
        for k, ax in enumerate(fig.axes):
            if ax is owner or not ax.get_visible() or not ax.axison and not ax.images and not ax.collections:
                continue
            if owner is not None and _colorbar_of(owner) is ax:
                continue
            if _overlap(box, ax.get_window_extent(renderer), pad):
                found.append((text.get_text(), k))
    return found


def _data_points(ax: Any) -> Any:
    """Display coordinates of the data drawn in ``ax``: line vertices (segments sampled), markers, bar corners."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    points = [np.zeros((0, 2))]
    for line in ax.get_lines():
        if not isinstance(line, Line2D) or not line.get_visible():
            continue
        xy = np.asarray(line.get_xydata(), dtype=float)
        xy = xy[np.isfinite(xy).all(1)]
        if not len(xy):
            continue
        xy = line.get_transform().transform(xy)  # display space first: log axes draw straight segments there
        if len(xy) > 1 and line.get_linestyle() not in ("None", "", " "):
            t = np.linspace(0, 1, 25)[:, None]
            xy = np.concatenate([a + t * (b - a) for a, b in zip(xy[:-1], xy[1:])])
        points.append(xy)
    for coll in ax.collections:
        offsets = np.asarray(coll.get_offsets(), dtype=float)
        if offsets.size and coll.get_visible():
            points.append(coll.get_offset_transform().transform(offsets[np.isfinite(offsets).all(1)]))
    for patch in ax.patches:
        if isinstance(patch, Rectangle) and patch.get_visible() and patch.get_height() and patch.get_width():
            box = patch.get_window_extent()
            points.append(np.array([[box.x0, box.y0], [box.x1, box.y1], [box.x0, box.y1], [box.x1, box.y0]]))
    return np.concatenate(points)


def legends_over_data(fig: Any, draw: bool = True) -> list[int]:
    """Indices of the panels whose drawn data (of the panel or any panel sharing its area) a legend covers."""
    if draw:
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None or not legend.get_visible():
            continue
        box = legend.get_window_extent(renderer)
        for k, other in enumerate(fig.axes):
            if not other.get_window_extent(renderer).overlaps(box):
                continue
            pts = _data_points(other)
            inside = (pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1)
            if inside.any():
                found.append(k)
    return found


def _colorbar_of(ax: Any) -> Any:
    return getattr(getattr(ax, "_colorbar", None), "ax", None)


def is_centred_at_zero(mappable: Any, rtol: float = 1e-6) -> bool:
    """Whether an image/collection's colour limits are symmetric about 0 (``vmin == -vmax``)."""
    lo, hi = mappable.get_clim()
    return bool(np.isclose(lo, -hi, rtol=rtol, atol=1e-12 + rtol * abs(hi)))


def edge_clearances(fig: Any) -> list[float]:
    """Per drawn graph edge: how close it passes to a node it does not join, in node radii.

    Reads the first axes of a graph figure (nodes: its first scatter collection; edges: its
    ``FancyArrowPatch`` es). A value below 1 means the edge runs through a node's circle; the two
    nodes an edge joins are those nearest its ends.
    """
    from matplotlib.patches import FancyArrowPatch

    fig.canvas.draw()
    ax = fig.axes[0]
    nodes = ax.collections[0]
    centres = ax.transData.transform(nodes.get_offsets())
    radius = float(np.sqrt(nodes.get_sizes()[0]) / 2 * fig.dpi / 72)
    out = []
    for patch in (p for p in ax.patches if isinstance(p, FancyArrowPatch)):
        line = ax.transData.transform(np.concatenate(patch.get_path().to_polygons(closed_only=False)))
        ends = {int(np.argmin(np.linalg.norm(centres - line[i], axis=1))) for i in (0, -1)}
        others = np.delete(centres, sorted(ends), axis=0)
        gap = float(np.min(np.linalg.norm(line[:, None] - others[None], axis=-1))) if len(others) else float("inf")
        out.append(gap / radius)
    return out
