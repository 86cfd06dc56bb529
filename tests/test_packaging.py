"""The wheel ships the zoo (weights, tokenizers, cards, circuits); installed, it loads offline and runs the report."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: as in tests/core/test_zoo_format.py: every model the wheel must ship.
SHIPPED = ["attn-only-2l", "cot-direct", "cot-reader", "toy-lm", "tracr-frac-prevs", "tracr-prev-tokens", "tracr-reverse"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("mechinterp-*.whl"))


def test_wheel_contains_every_zoo_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    models = sorted(p for p in (ROOT / "mechinterp" / "zoo" / "models").iterdir() if (p / "config.json").exists())
    assert models, "the source tree has no zoo models"
    for model in [*models, ROOT / "mechinterp" / "zoo" / "superposition"]:  # and the toy model of superposition
        for file in model.rglob("*"):
            if file.is_file():
                assert str(file.relative_to(ROOT)) in names, f"{file.relative_to(ROOT)} missing from the wheel"


def test_installed_wheel_loads_zoo_offline(wheel, tmp_path):

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True)
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('offline')\n"
        "socket.socket.connect = refuse\n"
        "import mechinterp\n"
        f"assert mechinterp.__file__.startswith({str(target)!r}), mechinterp.__file__\n"
        f"assert mechinterp.zoo.names() == {SHIPPED!r}, mechinterp.zoo.names()\n"  # a model missing from the wheel fails
        "for name in mechinterp.zoo.names():\n"
        "    model = mechinterp.load('zoo:' + name)\n"
        "    assert model.cfg.n_layers >= 1\n"
        "print('ok', mechinterp.zoo.names())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok")
    report = subprocess.run(
        [sys.executable, "-m", "mechinterp", "report", "--model", "zoo:toy-lm", "--task", "ioi", "--n", "8", "--out", "rep"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert report.returncode == 0, report.stderr[-2000:]
    assert "<section id='probes'>" in (tmp_path / "rep" / "report.html").read_text()
