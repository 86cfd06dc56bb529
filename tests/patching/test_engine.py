"""The engine: stacking, start-at-layer and prefix reuse give the naive loop's numbers."""

from __future__ import annotations

import pytest
import torch

from mechinterp.patching.engine import Patch, base_run, run_variants


def _variants(model, clean_cache, n_pos):
    out = []
    for layer in range(model.cfg.n_layers):
        for pos in range(n_pos):
            mask = torch.zeros(n_pos, 1, dtype=torch.bool)
            mask[pos] = True
            hook = f"blocks.{layer}.hook_resid_pre"
            out.append((Patch(hook, mask, clean_cache[hook]),))
    # a two-site variant (layers 0 and 1) and an additive one
    m2 = torch.zeros(n_pos, 4, 1, dtype=torch.bool)
    m2[5:, 2] = True
    out.append((Patch("blocks.0.attn.hook_z", m2, clean_cache["blocks.0.attn.hook_z"]), out[n_pos + 3][0]))
    out.append((Patch("blocks.1.hook_mlp_out", torch.ones(n_pos, 1, dtype=torch.bool), torch.ones(1, n_pos, 32), add=True),))
    return out


def test_chunking_and_prefix_reuse_match_naive(tiny_model, pair, metric, reference):
    clean, corrupted, _, _ = pair
    _, cache = tiny_model.run_with_cache(clean)
    base = base_run(tiny_model, corrupted, metric)
    variants = _variants(tiny_model, cache, clean.shape[1])
    naive = reference(tiny_model, base, variants, metric)
    for chunk in (1, 2, 7, None):
        for reuse in (True, False):
            fast = run_variants(tiny_model, base, variants, metric, chunk_size=chunk, reuse_prefix=reuse)
            torch.testing.assert_close(fast, naive, atol=1e-5, rtol=0)
    tiny = run_variants(tiny_model, base, variants, metric, memory_budget=1)  # one variant per pass
    torch.testing.assert_close(tiny, naive, atol=1e-5, rtol=0)


def test_rotary_model_prefix_reuse(pair, metric, reference):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=48,
                                  act_fn="gelu", normalization_type="RMS", positional_embedding_type="rotary", seed=3, device="cpu")
    model = HookedTransformer(cfg).eval()
    clean, corrupted, _, _ = pair
    _, cache = model.run_with_cache(clean)
    base = base_run(model, corrupted, metric)
    variants = _variants(model, cache, clean.shape[1])
    torch.testing.assert_close(run_variants(model, base, variants, metric, chunk_size=3), reference(model, base, variants, metric), atol=1e-5, rtol=0)


def test_capture_returns_patched_activations(tiny_model, pair, metric):
    clean, corrupted, _, _ = pair
    _, cache = tiny_model.run_with_cache(clean)
    base = base_run(tiny_model, corrupted, metric)
    variants = [(Patch("blocks.0.hook_resid_pre", torch.ones(10, 1, dtype=torch.bool), cache["blocks.0.hook_resid_pre"]),)]
    values, captured = run_variants(tiny_model, base, variants, metric, capture=["blocks.1.hook_resid_pre"])
    torch.testing.assert_close(captured["blocks.1.hook_resid_pre"][0], cache["blocks.1.hook_resid_pre"], atol=1e-5, rtol=0)
    torch.testing.assert_close(values[0], metric(tiny_model(clean)), atol=1e-5, rtol=0)


def _check_engine(model, pair, metric, reference):
    """The engine (stacked, planned) and the strategy="naive" loop against the independent reference."""
    clean, corrupted, _, _ = pair
    _, cache = model.run_with_cache(clean)
    base = base_run(model, corrupted, metric)
    variants = _variants(model, cache, clean.shape[1])
    expected = reference(model, base, variants, metric)
    torch.testing.assert_close(run_variants(model, base, variants, metric), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(run_variants(model, base, variants, metric, naive=True), expected, atol=1e-5, rtol=0)


def test_the_engine_equals_an_independent_reference(tiny_model, pair, metric, reference):
    _check_engine(tiny_model, pair, metric, reference)


@pytest.mark.parametrize("mutation", ["skip the write", "write at every position", "add instead of replace"])
def test_a_broken_patch_write_fails_the_engine_check(tiny_model, pair, metric, reference, monkeypatch, mutation):
    """Mutation check: with the engine's write broken, its own check against the reference fails (a test
    comparing the engine with run_variants(naive=True) alone would not notice: both use the same write)."""
    import mechinterp.patching.stacked as stacked

    real = stacked.write

    def broken(act, mask, value, mode):
        if mutation == "skip the write":
            return act
        if mutation == "write at every position":
            return real(act, torch.ones_like(mask), value, mode)
        return real(act, mask, value, "add")

    _check_engine(tiny_model, pair, metric, reference)  # sound as it is
    monkeypatch.setattr(stacked, "write", broken)
    with pytest.raises(AssertionError):
        _check_engine(tiny_model, pair, metric, reference)


def test_scale_mode_equals_the_reference(tiny_model, pair, metric, reference):
    """``mode="scale"`` (multiply where the mask is true) through the stacked and the single-position paths."""
    clean, corrupted, _, _ = pair
    n_pos = clean.shape[1]
    base = base_run(tiny_model, corrupted, metric, cache_hooks=["blocks.0.hook_mlp_out"])
    variants = []
    for pos in range(n_pos):
        mask = torch.zeros(n_pos, 1, dtype=torch.bool)
        mask[pos] = True
        variants.append((Patch("blocks.0.hook_mlp_out", mask, torch.full((1, n_pos, 32), 3.0), mode="scale"),))
        variants.append((Patch("blocks.1.hook_resid_pre", mask, torch.full((1, n_pos, 32), 0.5), mode="scale"),))
    expected = reference(tiny_model, base, variants, metric)
    assert (expected != base.metric).any()  # the scaling changes the metric
    torch.testing.assert_close(run_variants(tiny_model, base, variants, metric), expected, atol=1e-5, rtol=0)
