"""Every notebook in notebooks/ is what its builder writes, runs top to bottom on the zoo models,
and is stored without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# Notebooks whose family tests already execute them (with extra checks on their outputs).
EXECUTED_ELSEWHERE = {"attention": "tests/attention/test_notebook.py"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stripped(path):
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} is stored with outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_what_its_builder_writes(path):
    """Edit ``notebooks/build_<name>.py`` and rerun it; never the ``.ipynb`` by hand."""
    import importlib.util

    import nbformat

    builder = path.with_name(f"build_{path.stem}.py")
    assert builder.exists(), f"{path.name} has no builder {builder.name}"
    spec = importlib.util.spec_from_file_location(f"build_{path.stem}", builder)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stored = nbformat.read(path, as_version=4)
    built = module.build()
    assert [(c.cell_type, c.source) for c in stored.cells] == [(c.cell_type, c.source) for c in built.cells], (
        f"{path.name} differs from what {builder.name} writes: run python notebooks/{builder.name}")


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem not in EXECUTED_ELSEWHERE], ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    env_before = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "Agg"
    try:
        client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
        client.execute()
    finally:
        if env_before is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_before
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
