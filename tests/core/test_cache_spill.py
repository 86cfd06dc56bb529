"""SharedCache spill files: written in the cache's own subfolder, removed on close / garbage
collection / exit, leftovers of killed processes swept, user files never touched."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mechinterp import SharedCache

PROMPTS = ["w1 w2 w3", "w4 w5", "w6 w7 w8 w9"]


def _user_files(folder: Path) -> None:
    (folder / "notes.txt").write_text("mine")
    (folder / "mechinterp-cache-notes").mkdir()  # looks like ours, but is not named <pid>-<random>
    (folder / "mechinterp-cache-notes" / "keep.npy").write_bytes(b"x")


def _untouched(folder: Path) -> bool:
    return (folder / "notes.txt").read_text() == "mine" and (folder / "mechinterp-cache-notes" / "keep.npy").exists()


def test_close_removes_only_the_cache_subfolder(tiny_model, tmp_path):
    _user_files(tmp_path)
    with SharedCache(tiny_model, PROMPTS, memory_budget=0, spill_dir=tmp_path) as cache:
        value = cache["resid_post", 1].clone()
        sub = cache.spill_folder
        assert sub.parent == tmp_path and sub.name.startswith(f"mechinterp-cache-{os.getpid()}-")
        assert len(list(sub.glob("*.npy"))) == 1 and cache.spilled
    assert not sub.exists() and _untouched(tmp_path)
    cache.close()  # idempotent
    torch.testing.assert_close(cache["resid_post", 1], value)  # recomputed after close
    cache.close()


def test_garbage_collection_removes_the_subfolder(tiny_model, tmp_path):
    cache = SharedCache(tiny_model, PROMPTS, memory_budget=0, spill_dir=tmp_path)
    cache.fetch(["resid_post"])
    sub = cache.spill_folder
    assert sub.exists()
    del cache
    gc.collect()
    assert not sub.exists()


def test_default_spill_folder_is_cleaned_too(tiny_model):
    cache = SharedCache(tiny_model, PROMPTS, memory_budget=0)
    cache.fetch(["resid_pre"])
    sub = cache.spill_folder
    assert sub.exists() and sub.name.startswith("mechinterp-cache-")
    cache.close()
    assert not sub.exists()


SCRIPT = """
import os, signal, sys, torch
sys.path.insert(0, {tests!r})
from transformer_lens import HookedTransformer, HookedTransformerConfig
from mechinterp import SharedCache
cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, n_ctx=8, d_vocab=20, act_fn="relu",
                              attn_only=True, device="cpu")
model = HookedTransformer(cfg)
cache = SharedCache(model, torch.randint(0, 20, (2, 5)), memory_budget=0, spill_dir={root!r})
cache.fetch(["resid_post"])
print(cache.spill_folder, flush=True)
{end}
"""


def _child(root: Path, end: str) -> Path:
    code = textwrap.dedent(SCRIPT).format(tests=str(Path(__file__).parent), root=str(root), end=end)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-2000:]
    return Path(lines[-1])


def test_exit_cleans_and_a_kill_is_swept_by_the_next_cache(tiny_model, tmp_path):
    _user_files(tmp_path)
    exited = _child(tmp_path, "")  # normal interpreter exit: weakref.finalize runs at exit
    assert not exited.exists()
    killed = _child(tmp_path, "os.kill(os.getpid(), signal.SIGKILL)")
    assert killed.exists()  # nothing can run on SIGKILL
    with SharedCache(tiny_model, PROMPTS, memory_budget=0, spill_dir=tmp_path) as cache:
        cache.fetch(["resid_post"])
        assert not killed.exists()  # its process is gone: swept
        assert cache.spill_folder.exists()
    assert _untouched(tmp_path)


def test_a_live_process_folder_is_kept(tiny_model, tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f"mechinterp-cache-{other.pid}-abc123"
        live.mkdir()
        with SharedCache(tiny_model, PROMPTS, memory_budget=0, spill_dir=tmp_path) as cache:
            cache.fetch(["resid_post"])
        assert live.exists()
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()


def test_unwritable_spill_dir_is_a_mechinterp_error(tiny_model, tmp_path):
    from mechinterp.errors import MechinterpError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MechinterpError, match="spill_dir"):  # checked when the cache is made, before any work
        SharedCache(tiny_model, PROMPTS, memory_budget=0, spill_dir=blocker / "sub")
