"""The engine: stacking, start-at-layer and prefix reuse give the naive loop's numbers."""

from __future__ import annotations

import torch

from mechinterp.patching.engine import Patch, base_run, run_naive, run_variants


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


def test_chunking_and_prefix_reuse_match_naive(tiny_model, pair, metric):
    clean, corrupted, _, _ = pair
    _, cache = tiny_model.run_with_cache(clean)
    base = base_run(tiny_model, corrupted, metric)
    variants = _variants(tiny_model, cache, clean.shape[1])
    naive = run_naive(tiny_model, base, variants, metric)
    for chunk in (1, 2, 7, None):
        for reuse in (True, False):
            fast = run_variants(tiny_model, base, variants, metric, chunk_size=chunk, reuse_prefix=reuse)
            torch.testing.assert_close(fast, naive, atol=1e-5, rtol=0)
    tiny = run_variants(tiny_model, base, variants, metric, memory_budget=1)  # one variant per pass
    torch.testing.assert_close(tiny, naive, atol=1e-5, rtol=0)


def test_rotary_model_prefix_reuse(pair, metric):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=48,
                                  act_fn="gelu", normalization_type="RMS", positional_embedding_type="rotary", seed=3, device="cpu")
    model = HookedTransformer(cfg).eval()
    clean, corrupted, _, _ = pair
    _, cache = model.run_with_cache(clean)
    base = base_run(model, corrupted, metric)
    variants = _variants(model, cache, clean.shape[1])
    torch.testing.assert_close(run_variants(model, base, variants, metric, chunk_size=3), run_naive(model, base, variants, metric), atol=1e-5, rtol=0)


def test_capture_returns_patched_activations(tiny_model, pair, metric):
    clean, corrupted, _, _ = pair
    _, cache = tiny_model.run_with_cache(clean)
    base = base_run(tiny_model, corrupted, metric)
    variants = [(Patch("blocks.0.hook_resid_pre", torch.ones(10, 1, dtype=torch.bool), cache["blocks.0.hook_resid_pre"]),)]
    values, captured = run_variants(tiny_model, base, variants, metric, capture=["blocks.1.hook_resid_pre"])
    torch.testing.assert_close(captured["blocks.1.hook_resid_pre"][0], cache["blocks.1.hook_resid_pre"], atol=1e-5, rtol=0)
    torch.testing.assert_close(values[0], metric(tiny_model(clean)), atol=1e-5, rtol=0)
