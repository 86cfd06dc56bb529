"""Gradients spill to disk above the budget, scoring reads bounded chunks, and scores do not change."""

from __future__ import annotations

import math

import pytest
import torch

from mechinterp.errors import MechinterpError
from mechinterp.influence import GradientStore, InfluenceIndex, RandomProjection
from mechinterp.influence.planted import make_data, make_model, train


def test_store_on_disk_matches_memory_and_reads_bounded_chunks(tmp_path):
    rows = torch.randn(100, 16)
    budget = rows.numel() * 4 / 10  # the matrix is 10x the budget
    disk = GradientStore(100, 16, budget, tmp_path)
    mem = GradientStore(100, 16, None)
    for start in range(0, 100, 7):
        disk.append(rows[start : start + 7], rows[start : start + 7].norm(dim=1))
        mem.append(rows[start : start + 7], rows[start : start + 7].norm(dim=1))
    assert disk.on_disk and not mem.on_disk and list(tmp_path.glob("*.npy"))
    assert all(len(block) * 16 * 4 <= budget / 4 for _, block in disk.chunks())
    q = torch.randn(3, 16)
    torch.testing.assert_close(disk.dot(q), q @ rows.T)
    torch.testing.assert_close(mem.dot(q), q @ rows.T)
    with pytest.raises(MechinterpError, match="memory_budget"):
        GradientStore(1, 1, 0)
    with pytest.raises(MechinterpError, match="size"):
        GradientStore(1, 1, "lots")


def test_index_under_a_budget_ten_times_smaller_gives_the_same_scores(tmp_path):
    data = make_data(n_subjects=6, n_planted=2, copies=2)
    model = make_model(data.d_vocab, d_model=16)
    train(model, data.tokens, steps=20)
    queries = [(torch.tensor(p), t) for p, t in data.queries]
    free = InfluenceIndex(model, "ekfac", projection_dim=64, memory_budget=None).fit(data.tokens)
    budget = free.store_.nbytes / 10
    tight = InfluenceIndex(model, "ekfac", projection_dim=64, memory_budget=budget, cache_dir=tmp_path).fit(data.tokens)
    assert tight.store_.on_disk and not free.store_.on_disk
    assert tight.store_.chunk_rows * tight.store_.dim * 4 <= budget
    a, b = free.score(queries, per_token=False), tight.score(queries, per_token=False)
    torch.testing.assert_close(a.scores, b.scores)
    assert b.meta["on_disk"]


def test_projection_keeps_dot_products_in_expectation():
    g = torch.randn(2, 40, 30)
    proj_dots = []
    for seed in range(200):
        p = RandomProjection({"w": (40, 30)}, dim=64, seed=seed)
        v = p({"w": g})
        proj_dots.append(float(v[0] @ v[1]))
    exact = float((g[0] * g[1]).sum())
    spread = float(g[0].norm() * g[1].norm()) / math.sqrt(64)  # the size of one projection's error
    mean = sum(proj_dots) / len(proj_dots)
    assert abs(mean - exact) < 4 * spread / math.sqrt(len(proj_dots))
    assert RandomProjection({"w": (4, 4)}, dim=64).out_dim == 16  # small parameters are kept exactly
    with pytest.raises(MechinterpError, match="projection_dim"):
        RandomProjection({"w": (4, 4)}, dim=0)
