"""Path patching against closed forms and activation patching where they must coincide."""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import UnknownSiteError
from mechinterp.patching import activation_patch, path_patch
from mechinterp.patching.path import parse_receivers


def test_all_downstream_receivers_equal_activation_patching(attn_only_model, pair, metric):
    """Attention-only: every path out of a head ends at a later head's q/k/v or the final residual."""
    clean, corrupted, _, _ = pair
    receivers = ["resid_final"] + [(1, h) for h in range(4)]
    act = activation_patch(attn_only_model, clean, corrupted, metric, site="z", by="head")
    for method in ("batched", "naive"):
        path = path_patch(attn_only_model, clean, corrupted, metric, receivers=receivers, method=method)
        torch.testing.assert_close(path.values, act.values, atol=1e-5, rtol=0)
    assert_no_hooks(attn_only_model)


def test_direct_path_to_logits_closed_form(tiny_model, pair, metric):
    """With MLPs frozen, sender -> final residual is the head's result delta added to the base residual."""
    clean, corrupted, _, _ = pair
    tiny_model.set_use_attn_result(True)
    try:
        _, clean_cache = tiny_model.run_with_cache(clean)
        _, corr_cache = tiny_model.run_with_cache(corrupted)
    finally:
        tiny_model.set_use_attn_result(False)
    path = path_patch(tiny_model, clean, corrupted, metric, receivers="resid_final", freeze_mlps=True, normalise=False)
    final = corr_cache["blocks.1.hook_resid_post"]
    for layer in range(2):
        for head in range(4):
            delta = clean_cache[f"blocks.{layer}.attn.hook_result"][:, :, head] - corr_cache[f"blocks.{layer}.attn.hook_result"][:, :, head]
            with torch.no_grad():
                expected = metric(tiny_model.unembed(tiny_model.ln_final(final + delta))).mean()
            assert float(path.raw[layer, head]) == pytest.approx(float(expected), abs=1e-5)


def test_last_layer_heads_equal_activation_patching(tiny_model, pair, metric):
    clean, corrupted, _, _ = pair
    path = path_patch(tiny_model, clean, corrupted, metric, receivers="resid_final")
    act = activation_patch(tiny_model, clean, corrupted, metric, site="z", by="head")
    # Raw units: the clean-corrupted gap of this random model is ~1e-3, and normalised values
    # would magnify fp32 round-off ~1000x.
    torch.testing.assert_close(path.raw[1], act.raw[1], atol=1e-5, rtol=0)


def test_batched_equals_naive_with_qkv_receivers_and_noising(tiny_model, pair, metric):
    clean, corrupted, _, _ = pair
    kw = dict(receivers=[(1, 0, "q"), (1, 2, "k"), "L1H3.v"], direction="noising")
    fast = path_patch(tiny_model, clean, corrupted, metric, **kw)
    naive = path_patch(tiny_model, clean, corrupted, metric, strategy="naive", **kw)
    torch.testing.assert_close(fast.raw, naive.raw, atol=1e-5, rtol=0)
    # No path from layer-1 heads into layer-1 inputs: exactly the base run.
    torch.testing.assert_close(fast.raw[1], torch.full((4,), fast.base_value), atol=1e-6, rtol=0)


def test_joint_senders_is_one_number(tiny_model, pair, metric):
    clean, corrupted, _, _ = pair
    joint = path_patch(tiny_model, clean, corrupted, metric, senders=[(0, 1)], receivers="resid_final")
    sweep = path_patch(tiny_model, clean, corrupted, metric, receivers="resid_final")
    assert joint.values.shape == ()
    assert float(joint.raw) == pytest.approx(float(sweep.raw[0, 1]), abs=1e-5)


def test_bad_receivers(tiny_model):
    for bad in ["L9H0.q", (0, 7, "q"), (0, 1, "x"), "nonsense"]:
        with pytest.raises(UnknownSiteError):
            parse_receivers(tiny_model, [bad])


@pytest.mark.parametrize("arg,bad", [("chunk_size", -1), ("chunk_size", 0), ("memory_budget", 0), ("memory_budget", "lots")])
def test_bad_sizes_raise(tiny_model, pair, metric, arg, bad):  # issue 16: chunk_size=-1 returned the base metric
    from mechinterp.errors import MechinterpError

    clean, corrupted, _, _ = pair
    with pytest.raises(MechinterpError, match=arg):
        path_patch(tiny_model, clean, corrupted, metric, **{arg: bad})
