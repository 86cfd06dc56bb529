"""Rendering helpers shared by every result: offline HTML pages, token colouring, heatmaps."""

from mechinterp.viz.figures import figure_to_img_tag, heatmap
from mechinterp.viz.html import escape, html_page, table_html, tokens_html

__all__ = ["escape", "figure_to_img_tag", "heatmap", "html_page", "table_html", "tokens_html"]
