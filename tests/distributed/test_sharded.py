"""The bar of issue 23: 2-process (gloo, CPU) results equal 1-process results to 1e-6.

Two ranks are forked from the test process (they inherit the imported package and the loaded
model, so no rank pays the import: the whole check costs a few seconds), join a gloo group on
a free local port through the same environment variables torchrun sets, and run every sharded
entry point in one worker: the sharded cache, activation patching (a task, prompts with a named
metric, the ``*_every`` sweep), integrated gradients over a prompt set, and EAP / EAP-IG /
scores under corrupted, zero, mean and resample ablation. The parent runs the same calls
in one process and compares.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import traceback

import pytest
import torch

import mechinterp
from mechinterp.attribution import attribute_many
from mechinterp.circuits import discover
from mechinterp.core.sharded_cache import ShardedCache
from mechinterp.errors import MechinterpError
from mechinterp.patching import activation_patch, patch_block_every

WORLD = 2
#: per-prompt outputs (cache reads, attributions) are the same computation on the same prompt: bit-identical
EXACT = ("cache_resid", "cache_pattern", "cache_last", "ig_scores", "ig_delta", "patch_labels", "eap_corrupted_n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sweeps(model, task) -> dict:
    """Every sharded entry point on ``model``/``task``; the same calls in one process or under distributed()."""
    out = {}
    cache = ShardedCache(model, task, positions="all", batch_size=4, progress=False)
    out["cache_resid"] = cache["resid_post", 1]
    out["cache_pattern"] = cache.stack("pattern")
    last = ShardedCache(model, task.clean_prompts, positions="last", progress=False)
    out["cache_last"] = last["resid_pre", 0]
    r = activation_patch(model, task, site="resid_pre", by="position")
    out["patch_values"], out["patch_raw"], out["patch_labels"] = r.values, r.raw, r.labels
    out["patch_base"], out["patch_target"] = torch.tensor(r.base_value), torch.tensor(r.target_value)
    answers = (task.correct_answers, task.wrong_answers)
    r = activation_patch(model, task.clean_prompts, task.corrupted_prompts, "logit_diff", answers=answers,
                         site="z", by="head", direction="noising")
    out["patch_named"] = r.values
    out["patch_zero"] = activation_patch(model, task, ablation="zero", site="attn_out", by="layer").values
    out["patch_every"] = patch_block_every(model, task).values
    pairs = list(zip(task.correct_answers, task.wrong_answers))[:3]
    ig = attribute_many(model, task.clean_prompts[:3], pairs, method="ig", n_steps=4)
    out["ig_scores"] = [a.scores for a in ig]
    out["ig_delta"] = torch.tensor([a.metadata["convergence_delta"] for a in ig]).flatten()
    for method, ablation in [("eap", "corrupted"), ("eap-ig-inputs", "corrupted"), ("eap", "zero"), ("eap", "mean"),
                             ("eap", "resample")]:
        c = discover(model, task, method, ablation, **({"steps": 2} if method == "eap-ig-inputs" else {}))
        out[f"{method}_{ablation}"] = c.scores
        out[f"{method}_{ablation}_n"] = torch.tensor(c.info["n_prompts"])
    with mechinterp.distributed(batch_size=3):  # calls of at most 3 prompts: 3+1 and 3 on two ranks, 3+3+1 in one
        out["batched_patch"] = activation_patch(model, task, site="resid_pre", by="position").values
        out["batched_eap_mean"] = discover(model, task, "eap", "mean").scores
        out["batched_eap_resample"] = discover(model, task, "eap", "resample").scores
    return out


class _FailsOnLastPrompt:
    """A metric whose block holding prompt 6 (rank 1's) raises: every rank must fail, none may hang."""

    def __init__(self, rows=None):
        self.rows = [] if rows is None else torch.as_tensor(rows).tolist()

    def subset(self, rows):
        return _FailsOnLastPrompt(rows)

    def __call__(self, logits):
        if 6 in self.rows:
            raise MechinterpError("prompt 6 cannot be scored")
        return logits[:, -1, 0]


def _worker(rank: int, port: int, model, task, path: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        with mechinterp.distributed(backend="gloo", timeout_s=120) as dist:
            assert (dist.rank, dist.world_size) == (rank, WORLD)
            result = _sweeps(model, task)
            try:
                activation_patch(model, task.clean_tokens, task.corrupted_tokens, _FailsOnLastPrompt(), site="resid_pre", by="layer")
            except MechinterpError as err:
                result["failure"] = f"{type(err).__name__}: {err}"
        torch.save(result, path)
    except BaseException:  # the parent reads the traceback
        with open(path + ".err", "w") as f:
            f.write(traceback.format_exc())
        raise


@pytest.fixture(scope="module")
def sharded_and_single(toy_lm, tmp_path_factory):
    task = mechinterp.tasks.load("ioi", toy_lm, n=7, seed=0)  # 7 prompts: blocks of 4 and 3
    folder = tmp_path_factory.mktemp("dist")
    port = _free_port()
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(r, port, toy_lm, task, str(folder / f"rank{r}.pt"))) for r in range(WORLD)]
    for p in procs:
        p.start()
    single = _sweeps(toy_lm, task)  # the one-process run, while the ranks work
    for p in procs:
        p.join(timeout=240)
    errors = [(folder / f"rank{r}.pt.err").read_text() for r in range(WORLD) if (folder / f"rank{r}.pt.err").exists()]
    assert not errors, errors[0]
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    ranks = [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    return single, ranks


def _close(key: str, a, b) -> None:
    """Bit-identical for per-prompt outputs; means over prompts within 1e-6 of the result's scale (max(1, max |a|)).

    Means over prompts are float32 sums in another order (two blocks, then a float64 combination), so they
    differ from the one-process sum by float32 rounding: measured up to 4e-6 on EAP scores of magnitude 7-13
    (1e-7 relative), up to 1e-6 on patching means of magnitude 9.
    """
    if isinstance(a, list) and a and isinstance(a[0], torch.Tensor):
        assert len(a) == len(b)
        pairs = list(zip(a, b))
    elif isinstance(a, torch.Tensor):
        pairs = [(a, b)]
    else:
        assert a == b
        return
    for x, y in pairs:
        assert x.shape == y.shape and x.dtype == y.dtype, (key, x.shape, y.shape)
        if key in EXACT:
            assert torch.equal(x, y), key
        else:
            scale = max(1.0, float(x.abs().max()))
            assert float((x.double() - y.double()).abs().max()) <= 1e-6 * scale, key


@pytest.mark.parametrize("key", [
    "cache_resid", "cache_pattern", "cache_last", "patch_values", "patch_raw", "patch_labels", "patch_base",
    "patch_target", "patch_named", "patch_zero", "patch_every", "ig_scores", "ig_delta", "eap_corrupted",
    "eap-ig-inputs_corrupted", "eap_zero", "eap_mean", "eap_resample", "eap_corrupted_n",
    "batched_patch", "batched_eap_mean", "batched_eap_resample",
])
def test_two_ranks_equal_one_process(sharded_and_single, key):
    single, ranks = sharded_and_single
    for rank in ranks:  # every rank holds the whole result
        _close(key, single[key], rank[key])


def test_a_failure_on_one_rank_fails_every_rank(sharded_and_single):
    _, (r0, r1) = sharded_and_single
    assert r1["failure"] == "MechinterpError: prompt 6 cannot be scored"  # its own error
    assert r0["failure"] == "DistributedError: rank 1 of 2 failed on its block of prompts: MechinterpError: prompt 6 cannot be scored"


def test_the_ranks_hold_identical_bits(sharded_and_single):
    _, (r0, r1) = sharded_and_single
    for key in r0:
        if isinstance(r0[key], torch.Tensor) and key != "failure":
            assert torch.equal(r0[key], r1[key]), key


def test_the_sweeps_are_not_trivial(sharded_and_single):
    """The compared numbers carry signal (a test of zeros against zeros would pass anything)."""
    single, _ = sharded_and_single
    for key in ("patch_values", "patch_named", "eap_corrupted", "eap_mean", "eap_resample", "cache_resid"):
        assert single[key].abs().max() > 1e-2, key
    for whole, batched in [("patch_values", "batched_patch"), ("eap_mean", "batched_eap_mean"),
                           ("eap_resample", "batched_eap_resample")]:  # calls of 3 prompts give the whole-set answer
        _close(whole, single[whole], single[batched])
    assert single["eap_mean"].sub(single["eap_corrupted"]).abs().max() > 1e-3

