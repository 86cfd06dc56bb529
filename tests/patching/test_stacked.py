"""The local tail (last block from the first read position, logits at read positions) is exact."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import patching as tlp

from mechinterp.core.hooks import assert_no_hooks
from mechinterp.patching import activation_patch, path_patch
from mechinterp.patching.engine import Patch, base_run, run_variants
from mechinterp.patching.plan import split_ok


def _sweep(model, cache, n_pos, sites=("hook_resid_pre", "hook_mlp_out", "attn.hook_z")):
    variants = []
    for layer in range(model.cfg.n_layers):
        for site in sites:
            hook = f"blocks.{layer}.{site}"
            if hook not in cache:
                continue
            for pos in range(n_pos):
                mask = torch.zeros(n_pos, *[1] * (cache[hook].ndim - 2), dtype=torch.bool)
                mask[pos] = True
                variants.append((Patch(hook, mask, cache[hook]),))
    return variants


@pytest.mark.parametrize("reads", ["last", "middle", "per_prompt", "two"])
def test_metrics_reading_any_positions_equal_the_naive_loop(tiny_model, pair, reads, reference):
    clean, corrupted, correct, wrong = pair
    rows = torch.arange(3)
    pos = {"last": torch.tensor([9, 9, 9]), "middle": torch.tensor([4, 4, 4]), "per_prompt": torch.tensor([9, 6, 3])}

    def metric(logits):
        if reads == "two":
            return logits[rows, 3, correct] - logits[rows, -1, wrong]
        return logits[rows, pos[reads], correct] - logits[rows, pos[reads], wrong]

    _, cache = tiny_model.run_with_cache(clean)
    base = base_run(tiny_model, corrupted, metric)
    variants = _sweep(tiny_model, cache, clean.shape[1])
    naive = reference(tiny_model, base, variants, metric)
    for chunk in (None, 4):
        fast = run_variants(tiny_model, base, variants, metric, chunk_size=chunk)
        torch.testing.assert_close(fast, naive, atol=1e-5, rtol=0)
    assert_no_hooks(tiny_model)


def test_user_metric_reading_a_middle_position_equals_transformer_lens(tiny_model, short_pair):
    clean, corrupted, correct, wrong = short_pair
    rows = torch.arange(2)

    def metric(logits):  # reads position 3 of 6: patches after it change nothing
        return logits[rows, 3, correct] - logits[rows, 3, wrong]

    _, cache = tiny_model.run_with_cache(clean)
    for site, by, tl_fn in [("resid_pre", "position", tlp.get_act_patch_resid_pre), ("z", "head_position", tlp.get_act_patch_attn_head_out_by_pos)]:
        expected = tl_fn(tiny_model, corrupted, cache, lambda logits: metric(logits).mean())
        ours = activation_patch(tiny_model, clean, corrupted, metric, site=site, by=by, normalise=False)
        torch.testing.assert_close(ours.raw, expected, atol=1e-5, rtol=0)
        assert (ours.raw[..., 4:, :] if site == "z" else ours.raw[:, 4:]).sub(ours.base_value).abs().max() < 1e-5


def test_metric_reading_an_uncomputed_position_falls_back_to_full_logits(tiny_model, pair):
    """A metric that passes the checks on the base run but reads another position on patched runs."""
    clean, corrupted, correct, wrong = pair
    rows = torch.arange(3)
    with torch.no_grad():
        corr_v, clean_v = tiny_model(corrupted)[:, -1, 0], tiny_model(clean)[:, -1, 0]
    mid, sign = (corr_v + clean_v) / 2, torch.sign(corr_v - clean_v)

    def tricky(logits):
        near_base = (logits[:, -1, 0] - mid) * sign > 0  # true on the base (corrupted) run only
        return torch.where(near_base, logits[rows, -1, correct], logits[rows, 2, wrong])

    result = activation_patch(tiny_model, clean, corrupted, tricky, site="resid_pre", by="layer", normalise=False)
    naive = activation_patch(tiny_model, clean, corrupted, tricky, site="resid_pre", by="layer", normalise=False, strategy="naive")
    torch.testing.assert_close(result.raw, naive.raw, atol=1e-5, rtol=0)
    assert torch.isfinite(result.raw).all()


def test_named_metrics_and_readout_full_agree(tiny_model):
    clean = ["w1 w2 w3 w4 w5", "w6 w7 w8 w9"]
    corrupted = ["w1 w2 w30 w4 w5", "w6 w7 w31 w9"]  # padded: the last real tokens differ
    for name, answers in [("logit_diff", (["w11", "w12"], ["w13", "w14"])), ("logprob", ["w11", "w12"]), ("kl", None)]:
        kw = dict(answers=answers, site="z", by="head_position", normalise=False)
        auto = activation_patch(tiny_model, clean, corrupted, name, **kw)
        full = activation_patch(tiny_model, clean, corrupted, name, readout="full", **kw)
        naive = activation_patch(tiny_model, clean, corrupted, name, strategy="naive", **kw)
        torch.testing.assert_close(auto.raw, full.raw, atol=1e-5, rtol=0)
        torch.testing.assert_close(auto.raw, naive.raw, atol=1e-5, rtol=0)


def test_persistent_user_hooks_disable_the_shortcuts(tiny_model, pair, metric, reference):
    clean, corrupted, _, _ = pair
    _, cache = tiny_model.run_with_cache(clean)
    variants = _sweep(tiny_model, cache, clean.shape[1], sites=("hook_resid_pre",))
    for hook_name in ("blocks.1.hook_mlp_out", "ln_final.hook_normalized"):
        tiny_model.add_hook(hook_name, lambda act, hook: act * 1.5)
        try:
            assert not split_ok(tiny_model, []) or hook_name.startswith("ln_final")
            base = base_run(tiny_model, corrupted, metric)
            fast = run_variants(tiny_model, base, variants, metric)
            torch.testing.assert_close(fast, reference(tiny_model, base, variants, metric), atol=1e-5, rtol=0)
        finally:
            tiny_model.reset_hooks()


def test_split_rules(tiny_model):
    assert split_ok(tiny_model, ["blocks.1.hook_resid_pre", "blocks.1.attn.hook_z", "blocks.0.hook_resid_pre"])
    assert not split_ok(tiny_model, ["blocks.1.attn.hook_rot_k"])
    assert not split_ok(tiny_model, [], other_hooks=["blocks.1.hook_resid_pre"])
    assert split_ok(tiny_model, [], other_hooks=["hook_embed"])


def test_path_patching_with_final_receivers_equals_naive(tiny_model, pair, metric):
    clean, corrupted, _, _ = pair
    fast = path_patch(tiny_model, clean, corrupted, metric, receivers="resid_final", normalise=False)
    naive = path_patch(tiny_model, clean, corrupted, metric, receivers="resid_final", normalise=False, strategy="naive")
    torch.testing.assert_close(fast.raw, naive.raw, atol=1e-5, rtol=0)
