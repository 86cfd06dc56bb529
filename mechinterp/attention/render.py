"""Offline circuitsvis: interactive attention views that embed their code and make no request.

circuitsvis renders React components. Its ``RenderedHTML`` has two versions of each view:
``str()``/``show_code()`` give a ``<script type="module">`` that *imports the bundle from
unpkg.com* (nothing shows offline), and its notebook ``_repr_html_`` first calls
``urlopen("http://google.com")`` to decide which version to show — a network request on
every display. ``local_src`` embeds the 1.3 MB bundle but repeats it for every view.

:func:`circuitsvis_html` builds what we need instead: one classic ``<script>`` holding the
bundle (read from circuitsvis's own ``dist/cdn/iife.js``, the file ``local_src`` inlines,
with its source-map comment dropped) followed by one ``CircuitsVis.render`` call per view,
so a page of many views carries the bundle once. :class:`OfflineView` wraps a fragment for
Jupyter (``_repr_html_`` returns it as is: no ping) and saves full pages.

Example:
    >>> view = OfflineView.from_components([("ColoredTokens", {"tokens": ["a", "b"], "values": [0.2, 0.8]})])
    >>> "unpkg" in view.html, "CircuitsVis.render" in view.html
    (False, True)
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mechinterp.viz import escape, html_page

__all__ = ["OfflineView", "circuitsvis_bundle", "circuitsvis_html", "external_references"]

# <script src=http...>, <link href=http...>, import ... from "http...", @import url(http...)
_EXTERNAL = re.compile(
    r"""<script[^>]*\bsrc\s*=\s*["']?\s*(?:https?:)?//"""
    r"""|<link[^>]*\bhref\s*=\s*["']?\s*(?:https?:)?//"""
    r"""|\bimport\b[^;'"]*\bfrom\s*["'](?:https?:)?//"""
    r"""|\bimport\s*\(\s*["'](?:https?:)?//"""
    r"""|@import\s+(?:url\()?\s*["']?(?:https?:)?//""",
    re.IGNORECASE,
)


def external_references(html: str) -> list[str]:
    """Script, module-import and stylesheet references to ``http(s)://`` (or ``//``) URLs in ``html``.

    An empty list means the page loads no code or style from the network.
    """
    return [m.group(0) for m in _EXTERNAL.finditer(html)]


@functools.lru_cache(maxsize=1)
def circuitsvis_bundle() -> str:
    """circuitsvis's browser bundle (defines the global ``CircuitsVis``), safe to inline."""
    import circuitsvis

    file = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    code = file.read_text(encoding="utf-8")
    code = re.sub(r"//# sourceMappingURL=\S+\s*$", "", code)  # no .map fetch from dev tools
    return code.replace("</script>", "<\\/script>")


def _props_json(props: dict[str, Any]) -> str:
    from circuitsvis.utils.convert_props import convert_props

    text = convert_props(props)
    json.loads(text)  # convert_props emits JSON; fail loudly if that ever changes
    return text.replace("</", "<\\/")  # a token "</script>" must not end the script


def circuitsvis_html(components: Sequence[tuple[str, dict[str, Any]]], titles: Sequence[str] | None = None) -> str:
    """A self-contained HTML fragment rendering circuitsvis components, the bundle inlined once.

    Args:
        components: ``(component name, props)`` pairs, e.g. ``("AttentionHeads", {"attention":
            ..., "tokens": [...]})``; props use circuitsvis's camelCase names.
        titles: optional headings, one per component.
    """
    blocks, calls = [], []
    for i, (name, props) in enumerate(components):
        div_id = f"mi-cv-{uuid.uuid4().hex[:12]}"
        title = f"<h3>{escape(titles[i])}</h3>" if titles else ""
        blocks.append(f"{title}<div id='{div_id}' class='mi-circuitsvis' style='margin:15px 0'></div>")
        calls.append(f'CircuitsVis.render("{div_id}", CircuitsVis.{name}, {_props_json(props)});')
    script = "<script>\n" + circuitsvis_bundle() + "\n" + "\n".join(calls) + "\n</script>"
    return "".join(blocks) + script


@dataclass(frozen=True)
class OfflineView:
    """An interactive circuitsvis view that works offline.

    Attributes:
        html: the fragment (divs plus one inline script with the bundle).
        title: used as the page title by :meth:`save`.
    """

    html: str
    title: str = "attention"

    @classmethod
    def from_components(
        cls, components: Sequence[tuple[str, dict[str, Any]]], title: str = "attention", titles: Sequence[str] | None = None
    ) -> OfflineView:
        return cls(circuitsvis_html(components, titles), title)

    def _repr_html_(self) -> str:
        return self.html

    def to_html(self) -> str:
        return self.html

    def page(self) -> str:
        """A complete HTML document around the view."""
        return html_page(self.title, f"<h2>{escape(self.title)}</h2>{self.html}")

    def save(self, path: str | Path) -> Path:
        """Write a complete, self-contained HTML page (opens offline, makes no request)."""
        from mechinterp.core.atomic import write_text
        from mechinterp.core.validation import check_writable

        return write_text(check_writable(path, "path"), self.page())

    def __str__(self) -> str:
        return self.html
