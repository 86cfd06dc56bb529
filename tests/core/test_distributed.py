"""The distributed core in one process: block bounds, the context, the exact combination, and every refusal.

The several-process results are checked in ``tests/distributed/test_sharded.py`` (two gloo ranks). Here,
``distributed(batch_size=...)`` in one process turns the sharding entry points on (each sweeps its prompts
in calls of that size), which is enough to reach every refusal and to check that calls of a few prompts
combine to the whole-set answer.
"""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.core.distributed import (
    Shard, batch_independent, combine_means, current, distributed, gather_objects, gather_results, gather_rows, local,
    shard_bounds, sharding,
)
from mechinterp.errors import DistributedError


@pytest.mark.parametrize("n", [1, 7, 10, 1024])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_blocks_are_contiguous_and_restore_the_order(n, world):
    bounds = [shard_bounds(n, r, world) for r in range(world)]
    assert [i for a, b in bounds for i in range(a, b)] == list(range(n))
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_bad_bounds_and_too_few_prompts():
    with pytest.raises(DistributedError, match="rank must be"):
        shard_bounds(4, 2, 2)
    ctx = Shard(1, 4, 1, "gloo", torch.device("cpu"))
    with pytest.raises(DistributedError, match="3 prompt.*cannot be split over 4 processes"):
        ctx.batches(3)
    assert Shard(1, 2, 1, "gloo", torch.device("cpu"), batch_size=2).batches(9) == [slice(5, 7), slice(7, 9)]


def test_combine_means_is_the_weighted_mean_in_float64():
    values = torch.randn(9, 3, generator=torch.Generator().manual_seed(0))
    blocks = [values[:5], values[5:]]
    combined = combine_means([b.mean(0) for b in blocks], [5, 4])
    assert combined.dtype == torch.float64
    torch.testing.assert_close(combined, values.double().mean(0), atol=1e-7, rtol=0)
    with pytest.raises(DistributedError, match="one positive count"):
        combine_means([torch.zeros(1)], [0])


def test_one_process_context_without_torchrun(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    assert current() is None
    with distributed() as ctx:
        assert (ctx.rank, ctx.world_size, ctx.backend, ctx.is_main) == (0, 1, None, True)
        assert current() is ctx and sharding() is None  # one process, no batch size: nothing to shard
        x = torch.arange(6.0).reshape(3, 2)
        assert gather_rows(x) is x and gather_objects("a") == ["a"]
        with distributed(batch_size=2) as inner:
            assert sharding() is inner and inner.batch_size == 2 and inner.batches(5) == [slice(0, 2), slice(2, 4), slice(4, 5)]
            with local():
                assert sharding() is None
        assert sharding() is None
    assert current() is None


def test_bad_launches_say_what_to_do(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for var in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(DistributedError, match="launch with torchrun"):
        with distributed():
            pass
    with pytest.raises(DistributedError, match="backend must be"):
        with distributed(backend="mpi"):
            pass
    with pytest.raises(DistributedError, match="batch_size must be a positive integer"):
        with distributed(batch_size=0):
            pass
    if not torch.cuda.is_available():
        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv("LOCAL_RANK", "0")
        monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
        monkeypatch.setenv("MASTER_PORT", "29500")
        with pytest.raises(DistributedError, match="backend='nccl' needs one GPU per process.*0 GPU"):
            with distributed(backend="nccl"):
                pass


def test_gather_results_in_one_process():
    assert gather_results(lambda: 3) == [3]
    with pytest.raises(ZeroDivisionError):  # one process: the error itself, nothing to tell other ranks
        gather_results(lambda: 1 / 0)


def test_batch_independent_marks_a_metric():
    fn = batch_independent(lambda logits: logits[:, -1, 0])
    assert fn.subset([0, 1]) is fn and fn(torch.ones(2, 3, 4)).shape == (2,)


@pytest.fixture(scope="module")
def ioi(toy_lm):
    return mechinterp.tasks.load("ioi", toy_lm, n=6, seed=2)


def test_calls_of_a_few_prompts_equal_the_whole_set(toy_lm, ioi):
    """One process, ``batch_size=4``: blocks of 4 and 2 prompts combine to the one-call result."""
    from mechinterp.attribution import attribute_many
    from mechinterp.circuits import discover
    from mechinterp.core.sharded_cache import ShardedCache
    from mechinterp.patching import activation_patch

    whole = activation_patch(toy_lm, ioi, site="z", by="head")
    eap = discover(toy_lm, ioi, "eap", "mean").scores
    with distributed(batch_size=4):
        parts = activation_patch(toy_lm, ioi, site="z", by="head")
        torch.testing.assert_close(discover(toy_lm, ioi, "eap", "mean").scores, eap, atol=1e-5, rtol=1e-6)
        cache = ShardedCache(toy_lm, ioi, progress=False)
        assert len(attribute_many(toy_lm, ioi.clean_prompts[:2], target=ioi.correct_answers[0], method="saliency")) == 2
    torch.testing.assert_close(parts.values, whole.values, atol=1e-6, rtol=1e-6)
    assert (parts.base_value, parts.target_value) == pytest.approx((whole.base_value, whole.target_value), abs=1e-6)
    torch.testing.assert_close(cache["resid_post", 1], mechinterp.SharedCache(toy_lm, ioi, progress=False)["resid_post", 1])


@pytest.mark.parametrize(("call", "match"), [
    (lambda m, t: mechinterp.patching.activation_patch(m, t, ablation="mean"), "whole prompt set"),
    (lambda m, t: mechinterp.patching.activation_patch(m, t.clean_tokens, t.corrupted_tokens, lambda lg: lg[:, -1, 0]),
     "batch_independent"),
    (lambda m, t: mechinterp.circuits.discover(m, t, "acdc"), "not a mean over prompts"),
    (lambda m, t: mechinterp.circuits.discover(m, t, "exact", node_first_pass=3), "node_first_pass"),
    (lambda m, t: mechinterp.circuits.discover(m, t, "eap", setup=mechinterp.circuits.setup_for(m, t)), "setup="),
])
def test_what_cannot_be_sharded_is_refused(toy_lm, ioi, call, match):
    from mechinterp.core.hooks import active_hooks

    with distributed(batch_size=3), pytest.raises(DistributedError, match=match):
        call(toy_lm, ioi)
    assert active_hooks(toy_lm) == []


def test_a_marked_metric_shards(toy_lm, ioi):
    from mechinterp.patching import activation_patch

    metric = batch_independent(lambda logits: logits[:, -1, 3] - logits[:, -1, 4])
    whole = activation_patch(toy_lm, ioi.clean_tokens, ioi.corrupted_tokens, metric, site="resid_pre", by="layer")
    with distributed(batch_size=4):
        parts = activation_patch(toy_lm, ioi.clean_tokens, ioi.corrupted_tokens, metric, site="resid_pre", by="layer")
    torch.testing.assert_close(parts.values, whole.values, atol=1e-6, rtol=1e-6)
