"""Self-contained HTML: pages, tables and tokens coloured by score, with no external assets.

Everything here inlines its styles; nothing references a URL, so pages open offline and
make no network request.
"""

from __future__ import annotations

import html as _html
from collections.abc import Sequence
from typing import Any

__all__ = ["escape", "html_page", "table_html", "tokens_html", "score_color"]

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;color:#1d1d1f;line-height:1.45}
h1,h2,h3{font-weight:600} table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}
th{background:#f5f5f7} .tok{display:inline-block;padding:0 .15rem;margin:.05rem;border-radius:3px;font-family:ui-monospace,monospace;white-space:pre}
.muted{color:#6e6e73;font-size:.9em} .error{border:2px solid #c0392b;background:#fdecea;padding:.5rem 1rem;border-radius:4px} .error pre{white-space:pre-wrap;font-size:.85em} section{margin-bottom:2rem} img{max-width:100%}
"""


def escape(text: Any) -> str:
    """HTML-escape ``text``."""
    return _html.escape(str(text))


def html_page(title: str, body: str) -> str:
    """A complete offline HTML document around ``body``."""
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def score_color(score: float, scale: float) -> str:
    """Red for positive, blue for negative scores, alpha by ``|score| / scale``."""
    alpha = 0.0 if scale <= 0 else min(1.0, abs(score) / scale)
    rgb = "220,50,47" if score >= 0 else "38,139,210"
    return f"rgba({rgb},{alpha:.3f})"


def tokens_html(tokens: Sequence[str], scores: Sequence[float], title: str | None = None) -> str:
    """Tokens as inline spans coloured by score (hover shows the value)."""
    scale = max((abs(float(s)) for s in scores), default=0.0)
    spans = "".join(
        f"<span class='tok' style='background:{score_color(float(s), scale)}' title='{float(s):.4g}'>{escape(t)}</span>"
        for t, s in zip(tokens, scores)
    )
    head = f"<div class='muted'>{escape(title)}</div>" if title else ""
    return f"<div>{head}{spans}</div>"


def table_html(rows: Sequence[dict[str, Any]], float_format: str = "{:.4g}") -> str:
    """A simple table from a list of dicts with the same keys."""
    if not rows:
        return "<p class='muted'>(empty)</p>"
    keys = list(rows[0])
    head = "".join(f"<th>{escape(k)}</th>" for k in keys)

    def cell(v: Any) -> str:
        return escape(float_format.format(v)) if isinstance(v, float) else escape(v)

    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(k, ''))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
