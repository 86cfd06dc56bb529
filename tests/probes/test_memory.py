"""Chunked reading of memory-mapped features: same values, and pages handed back."""

from __future__ import annotations

import numpy as np
import psutil
import torch

from mechinterp.probes import iter_rows, release_pages
from mechinterp.probes.memory import is_file_backed


def test_iter_rows_equals_stack_and_releases_pages(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).normal(size=(6000, 1000)).astype(np.float32))  # 24 MB
    reference = torch.from_numpy(np.load(path).sum(0))
    mapped = torch.from_numpy(np.load(path, mmap_mode="c"))
    assert is_file_backed(mapped) and not is_file_backed(torch.zeros(10))
    process = psutil.Process()
    before = process.memory_info().rss
    total = torch.zeros(1000)
    for rows, block in iter_rows([mapped], chunk_rows=500):
        assert block.shape == (1, rows.stop - rows.start, 1000)
        total += block[0].sum(0)
    grown = process.memory_info().rss - before
    assert grown < 12e6, f"RSS grew {grown / 1e6:.1f} MB reading a 24 MB memory map in chunks"
    torch.testing.assert_close(total, reference, rtol=1e-4, atol=1e-2)
    before = process.memory_info().rss
    dense = mapped.sum()  # touches every page
    release_pages(mapped)
    assert process.memory_info().rss - before < 12e6
    assert mapped.sum() == dense  # values unchanged after the pages were dropped
