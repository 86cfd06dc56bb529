"""One cache, paid once across families: what one family cached, the next reads without a forward pass.

Forward passes are counted on the model itself (a forward pre-hook records the input of every call that
starts from token ids), so the check does not rely on the cache's own bookkeeping.
"""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.attention import attention_rollout
from mechinterp.circuits import prepare
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.patching import activation_patch


@pytest.fixture
def token_runs(tiny_model):
    """The token inputs of every forward pass of ``tiny_model`` that starts from token ids."""
    calls: list[torch.Tensor] = []

    def record(module, args, kwargs):
        x = args[0] if args else kwargs.get("input")
        if isinstance(x, torch.Tensor) and not x.is_floating_point():
            calls.append(x.detach().cpu().clone())

    handle = tiny_model.register_forward_pre_hook(record, with_kwargs=True)
    yield calls
    handle.remove()


def _runs_on(calls, tokens):
    return sum(1 for c in calls if c.shape == tokens.shape and torch.equal(c, tokens))


@pytest.fixture
def prompts():
    gen = torch.Generator().manual_seed(3)
    clean = torch.randint(3, 40, (3, 8), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 3] = torch.randint(3, 40, (3,), generator=gen)
    return clean, corrupted


def _metric(logits):
    return logits[:, -1, 4] - logits[:, -1, 5]


def test_patching_then_attention_reads_the_cached_patterns(tiny_model, prompts, token_runs):
    clean, corrupted = prompts
    cache = mechinterp.SharedCache(tiny_model, clean)
    first = activation_patch(tiny_model, clean, corrupted, _metric, site="pattern", by="head", normalise=False, cache=cache)
    assert _runs_on(token_runs, clean) == 1  # the clean (source) run, into the shared cache
    assert "blocks.1.attn.hook_pattern" in cache.keys()
    passes = cache.n_forward_passes
    token_runs.clear()
    rollout = attention_rollout(tiny_model, cache)  # the attention family, on the same cache
    assert _runs_on(token_runs, clean) == 0 and cache.n_forward_passes == passes
    # ... and its numbers are those of a fresh run
    torch.testing.assert_close(rollout.token_scores, attention_rollout(tiny_model, clean).token_scores)
    # a second patching sweep and the circuits family: no new pass over the clean prompts either
    token_runs.clear()
    again = activation_patch(tiny_model, clean, corrupted, _metric, site="pattern", by="head", normalise=False, cache=cache)
    torch.testing.assert_close(again.raw, first.raw)
    assert _runs_on(token_runs, clean) == 0
    assert_no_hooks(tiny_model)


def test_circuits_reuse_what_patching_cached(tiny_model, prompts, token_runs):
    clean, corrupted = prompts
    cache = mechinterp.SharedCache(tiny_model, clean)
    for site in ("z", "mlp_out"):  # noising: the base run is on the clean prompts
        activation_patch(tiny_model, clean, corrupted, _metric, site=site, by="layer", direction="noising",
                         normalise=False, cache=cache)
    token_runs.clear()
    shared = prepare(tiny_model, clean, corrupted, cache=cache)  # sender outputs: embed, z @ W_O, mlp_out
    assert _runs_on(token_runs, clean) == 0 and _runs_on(token_runs, corrupted) == 1
    fresh = prepare(tiny_model, clean, corrupted)
    torch.testing.assert_close(shared.clean, fresh.clean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.patched, fresh.patched)


def test_the_cached_run_equals_a_fresh_one(tiny_model, prompts):
    """Patching with a cache the user filled gives the same numbers as patching without one."""
    clean, corrupted = prompts
    cache = mechinterp.SharedCache(tiny_model, clean)
    cache.fetch(["resid_pre"])
    with_cache = activation_patch(tiny_model, clean, corrupted, _metric, site="resid_pre", cache=cache)
    without = activation_patch(tiny_model, clean, corrupted, _metric, site="resid_pre")
    torch.testing.assert_close(with_cache.values, without.values)
    assert with_cache.target_value == pytest.approx(without.target_value, rel=1e-6)


def test_a_cache_of_other_prompts_or_positions_is_refused(tiny_model, prompts):
    clean, corrupted = prompts
    last = mechinterp.SharedCache(tiny_model, clean, positions="last")
    with pytest.raises(mechinterp.MechinterpError, match="positions='all'"):
        activation_patch(tiny_model, clean, corrupted, _metric, cache=last)
