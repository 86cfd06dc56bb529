"""Attribution patching: exact on linear paths; close to exact patching elsewhere; IG closer."""

from __future__ import annotations

import pytest
import torch

from mechinterp.patching import activation_patch, attribution_patch, compare_with_exact


@pytest.mark.parametrize("ig_steps", [None, 3])
@pytest.mark.parametrize("site,by", [("attn_out", "position"), ("z", "head_position"), ("z", "head"), ("resid_post", "position")])
def test_exact_on_linear_path(linear_model, pair, metric, site, by, ig_steps):
    """No LayerNorm, no MLP: logits are linear in the last layer's attention output and residual."""
    clean, corrupted, _, _ = pair
    approx = attribution_patch(linear_model, clean, corrupted, metric, sites=site, by=by, ig_steps=ig_steps)
    exact = activation_patch(linear_model, clean, corrupted, metric, site=site, by=by)
    torch.testing.assert_close(approx.values[-1], exact.values[-1], atol=1e-4, rtol=0)
    # The first layer goes through attention: not exact in general.
    if ig_steps is None and site != "resid_post":
        assert not torch.allclose(approx.values[0], exact.values[0], atol=1e-4)


def test_all_sites_at_once_match_single_site_calls(tiny_model, pair, metric):
    clean, corrupted, _, _ = pair
    every = attribution_patch(tiny_model, clean, corrupted, metric)
    assert set(every) == {"resid_pre", "attn_out", "mlp_out", "z"}
    single = attribution_patch(tiny_model, clean, corrupted, metric, sites="mlp_out")
    torch.testing.assert_close(every["mlp_out"].values, single.values)
    assert every["z"].values.shape == (2, 10)


def test_compare_with_exact_and_ig_refinement(model_factory, pair, metric):
    clean, corrupted, _, _ = pair
    tiny_model = model_factory(seed=1)
    plain = compare_with_exact(tiny_model, clean, corrupted, metric, site="resid_pre")
    ig = compare_with_exact(tiny_model, clean, corrupted, metric, site="resid_pre", ig_steps=8)
    # Measured on this random model: plain r ~= 0.92, IG r ~= 0.99 and a smaller error.
    assert plain.pearson > 0.8
    assert ig.pearson > 0.97
    assert ig.max_abs_error < plain.max_abs_error
    torch.testing.assert_close(plain.exact.values, activation_patch(tiny_model, clean, corrupted, metric).values)
    assert "Pearson" in ig.to_html()


@pytest.mark.parametrize("ig_steps", [None, 4])
def test_reduced_precision_sums_in_float32(tiny_model, pair, metric, ig_steps):
    """On a bf16 model, (source - base) . gradient is summed in float32: it equals the float64 sum
    of the same bf16 activations and gradients (a bf16 sum would be off by ~1e-2 relative)."""
    import copy

    model = copy.deepcopy(tiny_model).to(torch.bfloat16, print_details=False)
    clean, corrupted, _, _ = pair
    hook = "blocks.1.hook_mlp_out"
    result = attribution_patch(model, clean, corrupted, metric, sites="mlp_out", by="position", ig_steps=ig_steps, normalise=False)
    assert result.raw.dtype == torch.float32
    with torch.no_grad():
        source = model.run_with_cache(clean, names_filter=hook)[1][hook]
        resid0 = {t: model(x, stop_at_layer=0) for t, x in (("base", corrupted), ("source", clean))}
    steps = 1 if ig_steps is None else ig_steps
    alphas = [0.0] if ig_steps is None else [(k + 0.5) / steps for k in range(steps)]
    grad = torch.zeros(source.shape, dtype=torch.float64)
    for a in alphas:  # one backward per point of the path (ours stacks them in one batch)
        kept = {}
        inp = (resid0["base"].float() + a * (resid0["source"].float() - resid0["base"].float())).to(torch.bfloat16)
        with model.hooks(fwd_hooks=[(hook, lambda act, hook: kept.setdefault("a", act))]):
            value = metric(model(inp.requires_grad_(True), start_at_layer=0)).float().mean() / steps
        grad += torch.autograd.grad(value, kept["a"])[0].double()
    base = model.run_with_cache(corrupted, names_filter=hook)[1][hook]
    expected = ((source.double() - base.double()) * grad).sum((0, 2))  # per position
    got = (result.raw[-1] - result.base_value).double()
    scale = float(expected.abs().max())
    assert scale > 0.01
    torch.testing.assert_close(got, expected, atol=1e-3 * scale, rtol=0)
