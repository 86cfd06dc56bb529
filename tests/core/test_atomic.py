"""Atomic writes: a failed write keeps the old file, leaves no temporary file, and every writer uses the helper."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

import mechinterp
from mechinterp.core.atomic import atomic_path, save_figure, write_bytes, write_text
from mechinterp.errors import MechinterpError


def test_write_replaces_and_creates_folders(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two"
    write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # as a plain open() would make it


def test_a_failure_mid_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_result_save_is_atomic(tmp_path, monkeypatch):
    from mechinterp.circuits import FaithfulnessCurve

    curve = FaithfulnessCurve([0.5, 1.0], [1, 2], [0.5, 1.0], 0.4, 0.1, "eap")
    path = curve.save(tmp_path / "c.json")
    before = path.read_text()

    def boom(self):  # to_dict succeeds, then the HTML rendering fails half way
        raise RuntimeError("render failed")

    monkeypatch.setattr(FaithfulnessCurve, "to_html", boom)
    html = tmp_path / "c.html"
    html.write_text("previous page")
    with pytest.raises(RuntimeError):
        curve.save(html)
    assert html.read_text() == "previous page" and path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.html", "c.json"]


def test_unwritable_destination_is_a_mechinterp_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MechinterpError, match="file"):
        write_text(blocker / "out.json", "{}")  # a file where a folder should be


def test_save_figure_picks_the_format_from_the_suffix(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png, svg = save_figure(fig, tmp_path / "f.png"), save_figure(fig, tmp_path / "f.svg")
    plt.close(fig)
    assert png.read_bytes()[:4] == b"\x89PNG" and b"<svg" in svg.read_bytes()[:500]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "f.svg"]


# Writes that are not outputs: the staging folders the loader builds for TransformerLens, the cache spill files.
ALLOWED = {"core/atomic.py", "core/loading.py", "core/architectures.py", "core/storage.py"}
WRITES = re.compile(r"\.write_text\(|\.write_bytes\(|\bsave_file\(|\.savefig\((?!buffer)|open\([^)]*['\"][wa]b?['\"]")


def test_every_writer_in_the_package_goes_through_the_atomic_helper():
    root = Path(mechinterp.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in ALLOWED:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if WRITES.search(code) and ">>>" not in line and "atomic" not in line and "``" not in line and "tmp" not in code:
                offenders.append(f"{rel}:{i}: {line.strip()}")
    assert not offenders, "write outputs with mechinterp.core.atomic (write_text / save_figure / atomic_path):\n" + "\n".join(offenders)
