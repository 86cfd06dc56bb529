"""Grouped-query attention (Llama-style: rotary, RMSNorm, gated MLP, shared keys/values).

The engine reuses the unchanged prefix (the base run's keys and values in a frozen KV cache)
and runs the last block only from the read position on a grouped-query model too: ``hook_k``
holds the ``n_key_value_heads`` keys that the attention appends to its cache, so every sweep
must equal the one-run-per-patch loop and TransformerLens's patching functions.
"""

from __future__ import annotations

import pytest
import torch
from transformer_lens import patching as tlp

from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import UnknownSiteError
from mechinterp.patching import activation_patch, path_patch
from mechinterp.core.fastpath import kv_reuse_ok as _prefix_ok
from mechinterp.patching.plan import split_ok


@pytest.fixture(scope="module")
def gqa(llama_factory):
    return llama_factory()


def test_prefix_reuse_and_tail_split_apply_to_grouped_query_models(gqa):
    assert _prefix_ok(gqa)
    assert split_ok(gqa, ["blocks.2.hook_resid_pre"])
    assert gqa.cfg.n_key_value_heads == 2 and not gqa.cfg.ungroup_grouped_query_attention


SWEEPS = [("resid_pre", "position"), ("z", "head_position"), ("k", "head_position"), ("v", "head"), ("q", "head_position"),
          ("pattern", "head_position"), ("attn_out", "position"), ("mlp_out", "position")]


@pytest.mark.parametrize("site,by", SWEEPS, ids=[f"{s}-{b}" for s, b in SWEEPS])
def test_batched_equals_naive_on_a_grouped_query_model(gqa, pair, metric, site, by):
    clean, corrupted, _, _ = pair
    naive = activation_patch(gqa, clean, corrupted, metric, site=site, by=by, normalise=False, strategy="naive")
    assert naive.raw.std() > 1e-3  # the sweep moves the metric
    for chunk in (None, 3):
        fast = activation_patch(gqa, clean, corrupted, metric, site=site, by=by, normalise=False, chunk_size=chunk)
        torch.testing.assert_close(fast.raw, naive.raw, atol=1e-5, rtol=0)
    if site in ("k", "v"):
        assert fast.raw.shape[-1 if by == "head" else 2] == 2  # one entry per key/value head
    assert_no_hooks(gqa)


@pytest.mark.parametrize("site,tl_name", [("resid_pre", "get_act_patch_resid_pre"), ("z", "get_act_patch_attn_head_out_by_pos"),
                                          ("mlp_out", "get_act_patch_mlp_out")])
def test_equals_transformer_lens_on_a_grouped_query_model(gqa, short_pair, short_metric, site, tl_name):
    clean, corrupted, _, _ = short_pair
    _, cache = gqa.run_with_cache(clean)
    expected = getattr(tlp, tl_name)(gqa, corrupted, cache, lambda logits: short_metric(logits).mean())
    by = "head_position" if site == "z" else "position"
    ours = activation_patch(gqa, clean, corrupted, short_metric, site=site, by=by, normalise=False)
    torch.testing.assert_close(ours.raw, expected, atol=1e-5, rtol=0)


def test_ungrouped_model_patches_keys_per_query_head(llama_factory, pair, metric):
    """With ``ungroup_grouped_query_attention=True`` hook_k has one key per query head."""
    model = llama_factory(ungroup=True)
    clean, corrupted, _, _ = pair
    fast = activation_patch(model, clean, corrupted, metric, site="k", by="head", normalise=False)
    naive = activation_patch(model, clean, corrupted, metric, site="k", by="head", normalise=False, strategy="naive")
    assert fast.raw.shape == (3, 4)
    torch.testing.assert_close(fast.raw, naive.raw, atol=1e-5, rtol=0)


def test_path_patching_key_receivers_by_key_value_head(gqa, pair, metric):
    clean, corrupted, _, _ = pair
    receivers = [(2, 1, "k"), (2, 3, "q")]
    fast = path_patch(gqa, clean, corrupted, metric, receivers=receivers, normalise=False)
    naive = path_patch(gqa, clean, corrupted, metric, receivers=receivers, normalise=False, strategy="naive")
    torch.testing.assert_close(fast.raw, naive.raw, atol=1e-5, rtol=0)
    assert float(fast.raw[:2].abs().max()) > 0  # layers 0-1 reach layer 2's keys and queries
    with pytest.raises(UnknownSiteError, match="key/value head"):
        path_patch(gqa, clean, corrupted, metric, receivers=[(2, 3, "k")])  # only key/value heads 0..1
    with pytest.raises(UnknownSiteError, match="ambiguous"):
        path_patch(gqa, clean, corrupted, metric, receivers=[(2, 1)])
    assert_no_hooks(gqa)
