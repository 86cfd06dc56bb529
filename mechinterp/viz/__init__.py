"""Rendering helpers shared by every result: offline HTML pages, token colouring, heatmaps."""

from mechinterp.viz.figures import figure_to_img_tag, heatmap, heatmap_grid, pyplot
from mechinterp.viz.graph import edge_graph_figure
from mechinterp.viz.html import escape, html_page, table_html, tokens_html

__all__ = ["escape", "edge_graph_figure", "figure_to_img_tag", "heatmap", "heatmap_grid", "html_page", "pyplot", "table_html", "tokens_html"]
