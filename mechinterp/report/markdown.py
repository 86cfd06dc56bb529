"""A small Markdown-to-HTML renderer for model cards: paragraphs, headings, lists, tables, code, emphasis, links.

Only what model cards use; everything is escaped first, and links become their text with the
address in a tooltip (the report references no URL, so it opens offline with no request).

Example:
    >>> markdown_html("A **2-layer** model, see `circuit.json`.\\n\\n- one\\n- two")
    '<p>A <b>2-layer</b> model, see <code>circuit.json</code>.</p><ul><li>one</li><li>two</li></ul>'
"""

from __future__ import annotations

import re

from mechinterp.viz import escape

__all__ = ["markdown_html", "inline_html"]

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_EM = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])|(?<![\w_])_(?!\s)(.+?)(?<!\s)_(?![\w_])")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_LIST = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


def inline_html(text: str) -> str:
    """Escape ``text`` and render inline code, bold, emphasis and links."""
    codes: list[str] = []

    def keep(m: re.Match) -> str:
        codes.append(f"<code>{escape(m.group(1))}</code>")
        return f"\x00{len(codes) - 1}\x00"

    out = escape(_CODE.sub(keep, text))
    out = _LINK.sub(lambda m: f"<span title='{m.group(2)}'>{m.group(1)}</span>", out)
    out = _BOLD.sub(lambda m: f"<b>{m.group(1) or m.group(2)}</b>", out)
    out = _EM.sub(lambda m: f"<i>{m.group(1) or m.group(2)}</i>", out)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], out)


def markdown_html(text: str, heading_offset: int = 2) -> str:
    """Render Markdown ``text`` (headings shifted down by ``heading_offset`` levels, at most ``h6``)."""
    html, para, items, ordered, fence, rows = [], [], [], False, None, []

    def flush() -> None:
        nonlocal items, rows
        if rows:
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows
                     if not re.fullmatch(r"[\s|:-]+", r)]
            head, body = cells[0], cells[1:]
            html.append("<table><thead><tr>" + "".join(f"<th>{inline_html(c)}</th>" for c in head) + "</tr></thead><tbody>"
                        + "".join("<tr>" + "".join(f"<td>{inline_html(c)}</td>" for c in r) + "</tr>" for r in body)
                        + "</tbody></table>")
            rows = []
        if para:
            html.append(f"<p>{inline_html(' '.join(para))}</p>")
            para.clear()
        if items:
            tag = "ol" if ordered else "ul"
            html.append(f"<{tag}>" + "".join(f"<li>{inline_html(i)}</li>" for i in items) + f"</{tag}>")
            items = []

    for line in text.splitlines():
        if line.strip().startswith("```"):
            if fence is None:
                flush()
                fence = []
            else:
                html.append(f"<pre><code>{escape(chr(10).join(fence))}</code></pre>")
                fence = None
            continue
        if fence is not None:
            fence.append(line)
            continue
        if not line.strip():
            flush()
            continue
        if line.lstrip().startswith("|"):
            if not rows:
                flush()
            rows.append(line)
            continue
        if rows:
            flush()
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            flush()
            level = min(6, len(heading.group(1)) + heading_offset)
            html.append(f"<h{level}>{inline_html(heading.group(2))}</h{level}>")
        elif _LIST.match(line):
            if para:
                flush()
            ordered = bool(re.match(r"^\s*\d", line))
            items.append(_LIST.sub("", line, count=1))
        elif items and line.startswith((" ", "\t")):
            items[-1] += " " + line.strip()
        else:
            if items:
                flush()
            para.append(line.strip())
    if fence is not None:
        html.append(f"<pre><code>{escape(chr(10).join(fence))}</code></pre>")
    flush()
    return "".join(html)
