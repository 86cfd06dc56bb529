"""What every ``notebooks/build_*.py`` shares: cells in, a stripped notebook out, optionally run once.

Each builder lists its cells as ``(kind, source)`` pairs (``kind`` is ``"md"`` or ``"code"``)
and ends with ``main(CELLS, OUT, __doc__)``. Cell ids are numbered, so rebuilding an unchanged
notebook gives an identical file. ``tests/test_notebooks.py`` checks that every stored
notebook is what its builder writes, and executes it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

Cells = Sequence[tuple[str, str]]


def build(cells: Cells) -> nbformat.NotebookNode:
    """The notebook of ``cells``, no outputs, Python 3 kernel, stable cell ids."""
    nb = new_notebook()
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def main(cells: Cells, out: Path, doc: str | None = None, timeout: int = 300) -> None:
    """Write the notebook to ``out``; with ``--execute``, also run it once with nbclient (outputs not kept)."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    parser.add_argument("--execute", action="store_true", help="run the notebook once with nbclient (outputs not kept)")
    args = parser.parse_args()
    nbformat.write(build(cells), out)
    print(f"wrote {out}")
    if args.execute:
        from nbclient import NotebookClient

        start = time.perf_counter()
        nb = nbformat.read(out, as_version=4)
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(out.parent)}}).execute()
        print(f"executed without errors in {time.perf_counter() - start:.1f} s")
