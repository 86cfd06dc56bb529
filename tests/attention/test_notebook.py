"""notebooks/attention.ipynb: built by its script, stripped, and runs top to bottom offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mechinterp.attention import external_references

ROOT = Path(__file__).resolve().parents[2]


def _builder():
    spec = importlib.util.spec_from_file_location("build_attention", ROOT / "notebooks" / "build_attention.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebook_is_built_by_its_script_and_stripped():
    import nbformat

    on_disk = nbformat.read(ROOT / "notebooks" / "attention.ipynb", as_version=4)
    built = _builder().build()
    assert [c.source for c in on_disk.cells] == [c.source for c in built.cells]
    assert all(not c.get("outputs") for c in on_disk.cells if c.cell_type == "code")


@pytest.mark.slow
def test_notebook_executes_offline(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "attention.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    html = "".join(
        out.get("data", {}).get("text/html", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )
    assert "CircuitsVis.render" in html and external_references(html) == []
