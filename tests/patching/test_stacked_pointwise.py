"""Starting after a block patched at one position (pointwise.py) is exact, and used only where it applies."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import patching as tlp

import mechinterp.patching.stacked as pointwise
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.patching import activation_patch, patch_block_every
from mechinterp.patching.engine import Patch, base_run, model_flags, run_variants

TL_CASES = [
    ("z", "head_position", tlp.get_act_patch_attn_head_out_by_pos),
    ("attn_out", "position", tlp.get_act_patch_attn_out),
    ("mlp_out", "position", tlp.get_act_patch_mlp_out),
    ("resid_mid", "position", tlp.get_act_patch_resid_mid),
]


@pytest.fixture
def spy(monkeypatch):
    """The blocks :func:`pointwise.next_resid` started after, one entry per chunk."""
    calls: list[int] = []
    real = pointwise.next_resid

    def wrapped(model, base, chunk, layer, prefix):
        calls.append(layer)
        return real(model, base, chunk, layer, prefix)

    monkeypatch.setattr(pointwise, "next_resid", wrapped)
    return calls


def _padded(model):
    clean = model.to_tokens(["w1 w2 w3 w4 w5", "w6 w7 w8 w9"])
    corrupted = model.to_tokens(["w1 w2 w30 w4 w5", "w6 w7 w31 w9"])  # padded: the last real tokens differ
    last = (clean != model.tokenizer.pad_token_id).sum(1) - 1
    rows = torch.arange(2)
    correct, wrong = model.to_single_token("w11"), model.to_single_token("w12")

    def metric(logits):  # reads each prompt's last real token
        return logits[rows, last, correct] - logits[rows, last, wrong]

    return clean, corrupted, metric


@pytest.mark.parametrize("padded", [False, True], ids=["equal_lengths", "padded"])
@pytest.mark.parametrize("site,by,tl_fn", TL_CASES, ids=[c[0] for c in TL_CASES])
def test_equals_transformer_lens(tiny_model, short_pair, short_metric, spy, site, by, tl_fn, padded):
    if padded:
        clean, corrupted, metric = _padded(tiny_model)
    else:
        (clean, corrupted, _, _), metric = short_pair, short_metric
    _, cache = tiny_model.run_with_cache(clean)
    expected = tl_fn(tiny_model, corrupted, cache, lambda logits: metric(logits).mean())
    for readout in ("auto", "full"):
        spy.clear()
        ours = activation_patch(tiny_model, clean, corrupted, metric, site=site, by=by, normalise=False, readout=readout)
        torch.testing.assert_close(ours.raw, expected, atol=1e-5, rtol=0)
        assert sorted(set(spy)) == [0, 1]  # both layers took the path (layer 1: final LN and unembedding only)
    naive = activation_patch(tiny_model, clean, corrupted, metric, site=site, by=by, normalise=False, strategy="naive")
    torch.testing.assert_close(ours.raw, naive.raw, atol=1e-5, rtol=0)
    assert_no_hooks(tiny_model)


def _variants(model, cache, n_pos, sites, per_head=False, add=False):
    variants = []
    for layer in range(model.cfg.n_layers):
        for site in sites:
            hook = f"blocks.{layer}.{site}"
            act = cache[hook]
            for pos in range(n_pos):
                for head in range(model.cfg.n_heads) if per_head and act.ndim == 4 else [None]:
                    mask = torch.zeros(n_pos, *act.shape[2:], dtype=torch.bool)
                    if head is None:
                        mask[pos] = True
                    else:
                        mask[pos, head] = True
                    source = act - cache[hook].roll(1, 0) if add else act
                    variants.append((Patch(hook, mask, source, add=add),))
    return variants


SITES = ("attn.hook_z", "attn.hook_result", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post")


@pytest.mark.parametrize("add", [False, True], ids=["replace", "add"])
def test_every_stage_equals_the_naive_loop(tiny_model, pair, metric, spy, add, reference):
    clean, corrupted, _, _ = pair
    with model_flags(tiny_model, ["blocks.0.attn.hook_result"]):
        _, cache = tiny_model.run_with_cache(clean)
    variants = _variants(tiny_model, cache, clean.shape[1], SITES, per_head=True, add=add)
    base = base_run(tiny_model, corrupted, metric, cache_hooks=[p.hook for (p,) in variants])
    naive = reference(tiny_model, base, variants, metric)
    for chunk in (None, 7):
        spy.clear()
        fast = run_variants(tiny_model, base, variants, metric, chunk_size=chunk)
        torch.testing.assert_close(fast, naive, atol=1e-5, rtol=0)
        assert set(spy) == {0, 1}
    assert_no_hooks(tiny_model)


def test_attention_only_model(attn_only_model, pair, metric, spy, reference):
    clean, corrupted, _, _ = pair
    _, cache = attn_only_model.run_with_cache(clean)
    variants = _variants(attn_only_model, cache, clean.shape[1], ("attn.hook_z", "hook_attn_out", "hook_resid_post"), per_head=True)
    base = base_run(attn_only_model, corrupted, metric, cache_hooks=[p.hook for (p,) in variants])
    fast = run_variants(attn_only_model, base, variants, metric)
    torch.testing.assert_close(fast, reference(attn_only_model, base, variants, metric), atol=1e-5, rtol=0)
    assert set(spy) == {0, 1}


def test_block_every_mixes_paths(tiny_model, short_pair, short_metric, spy):
    clean, corrupted, _, _ = short_pair
    _, cache = tiny_model.run_with_cache(clean)
    expected = tlp.get_act_patch_block_every(tiny_model, corrupted, cache, lambda logits: short_metric(logits).mean())
    ours = patch_block_every(tiny_model, clean, corrupted, short_metric, normalise=False)
    torch.testing.assert_close(ours.raw, expected, atol=1e-5, rtol=0)
    assert spy  # attn_out and mlp_out took it; resid_pre did not (it changes keys and values)


def test_not_used_where_it_does_not_apply(tiny_model, pair, metric, spy, reference):
    clean, corrupted, _, _ = pair
    _, cache = tiny_model.run_with_cache(clean)
    n_pos = clean.shape[1]
    # q/k/v patches change attention; a patch over every position; two patches in one variant.
    variants = _variants(tiny_model, cache, n_pos, ("attn.hook_q", "attn.hook_k", "attn.hook_v"))
    variants.append((Patch("blocks.0.hook_attn_out", torch.ones(n_pos, 1, dtype=torch.bool), cache["blocks.0.hook_attn_out"]),))
    two = torch.zeros(n_pos, 1, dtype=torch.bool)
    two[3] = True
    variants.append((Patch("blocks.0.hook_mlp_out", two, cache["blocks.0.hook_mlp_out"]), Patch("blocks.1.hook_mlp_out", two, cache["blocks.1.hook_mlp_out"])))
    base = base_run(tiny_model, corrupted, metric, cache_hooks=sorted({p.hook for v in variants for p in v}))
    fast = run_variants(tiny_model, base, variants, metric)
    torch.testing.assert_close(fast, reference(tiny_model, base, variants, metric), atol=1e-5, rtol=0)
    assert spy == []


def test_not_used_in_a_block_with_a_users_hook(tiny_model, pair, metric, spy, reference):
    clean, corrupted, _, _ = pair
    _, cache = tiny_model.run_with_cache(clean)
    variants = _variants(tiny_model, cache, clean.shape[1], ("attn.hook_z", "hook_mlp_out"), per_head=True)
    tiny_model.add_hook("blocks.0.ln2.hook_normalized", lambda act, hook: act * 1.5)
    try:
        base = base_run(tiny_model, corrupted, metric, cache_hooks=[p.hook for (p,) in variants])
        fast = run_variants(tiny_model, base, variants, metric)
        torch.testing.assert_close(fast, reference(tiny_model, base, variants, metric), atol=1e-5, rtol=0)
    finally:
        tiny_model.reset_hooks()
    assert set(spy) == {1}  # block 1 has no hook of the user's: it still may
