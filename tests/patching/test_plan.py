"""Patches that write values already there change nothing: skipped, or a longer reused prefix."""

from __future__ import annotations

import torch

from mechinterp.patching.plan import effective_firsts
from mechinterp.patching.engine import Patch, base_run, run_variants


def _variants(model, cache, n_pos, hooks):
    out = []
    for hook in hooks:
        for pos in range(n_pos):
            mask = torch.zeros(n_pos, *[1] * (cache[hook].ndim - 2), dtype=torch.bool)
            mask[pos] = True
            out.append((Patch(hook, mask, cache[hook]),))
        out.append((Patch(hook, torch.ones(n_pos, *[1] * (cache[hook].ndim - 2), dtype=torch.bool), cache[hook]),))
    return out


def test_effective_first_positions(tiny_model, pair, metric):
    clean, corrupted, _, _ = pair  # differ at positions 2, 3, 4 only
    _, cache = tiny_model.run_with_cache(clean)
    hooks = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.1.attn.hook_z"]
    base = base_run(tiny_model, corrupted, metric, cache_hooks=["blocks.1.attn.hook_z"])
    firsts = effective_firsts(_variants(tiny_model, cache, 10, hooks), base)
    # Layer 0: only the corrupted tokens differ; layer 1: every position from the first corrupted one.
    assert firsts[:11] == [-1, -1, 2, 3, 4, -1, -1, -1, -1, -1, 2]
    assert firsts[11:22] == [-1, -1, 2, 3, 4, 5, 6, 7, 8, 9, 2]
    assert firsts[22:33] == [-1, -1, 2, 3, 4, 5, 6, 7, 8, 9, 2]
    # Additive patches: a zero source changes nothing; several patches are left as they are.
    zero = (Patch("blocks.1.hook_resid_pre", torch.ones(10, 1, dtype=torch.bool), torch.zeros(1, 10, 32), add=True),)
    two = (Patch("blocks.0.hook_resid_pre", torch.ones(10, 1, dtype=torch.bool), base.resid_pre[0]),) * 2
    assert effective_firsts([zero, two], base) == [-1, 0]


def test_skipped_and_shortened_variants_equal_the_naive_loop(tiny_model, pair, metric, reference):
    clean, corrupted, _, _ = pair
    _, cache = tiny_model.run_with_cache(clean)
    hooks = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.0.attn.hook_z", "blocks.1.hook_mlp_out"]
    base = base_run(tiny_model, corrupted, metric, cache_hooks=hooks[2:])
    variants = _variants(tiny_model, cache, 10, hooks)
    naive = reference(tiny_model, base, variants, metric)
    for chunk in (None, 3):
        torch.testing.assert_close(run_variants(tiny_model, base, variants, metric, chunk_size=chunk), naive, atol=1e-5, rtol=0)
    fast = run_variants(tiny_model, base, variants, metric)
    torch.testing.assert_close(fast[0], base.metric)  # a no-op patch is exactly the base run
