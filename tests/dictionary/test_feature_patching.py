"""Feature patching: the stacked runs equal one full forward per patch through ``splice``'s latent edit;
with an SAE that reconstructs exactly, patching every latent at a position is activation patching."""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.hooks import assert_no_hooks
from mechinterp.dictionary import feature_patch, splice
from mechinterp.errors import MechinterpError, ShapeMismatchError
from mechinterp.patching import PatchResult, activation_patch

from .conftest import identity_sae, make_sae, make_transcoder

HOOK = "blocks.0.hook_resid_post"


def _reference(model, sae, base, source_latents, metric, latent, positions):
    """One full forward pass on ``base`` with ``latent`` (at ``positions``) set to the source's value."""
    def edit(f):
        f = f.clone()
        f[:, positions, latent] = source_latents.expand_as(f)[:, positions, latent]
        return f

    with torch.no_grad(), splice(model, sae, edit=edit):
        return float(metric(model(base)).mean())


def _latents(model, sae, tokens):
    with torch.no_grad(), splice(model, sae) as state:
        model(tokens)
    return state.latents


@pytest.mark.parametrize("hook", [HOOK, "blocks.1.hook_mlp_out", "transcoder"])
def test_each_latent_equals_a_full_run_with_the_latent_edited(tiny_model, pair, hook):
    clean, corrupted, metric = pair
    sae = make_transcoder(tiny_model) if hook == "transcoder" else make_sae(tiny_model, hook)
    latents = list(range(0, 64, 3))
    res = feature_patch(tiny_model, sae, clean, corrupted, metric, latents=latents, chunk_size=5)
    assert isinstance(res, PatchResult) and res.dims == ("latent",) and res.method == "feature"
    src = _latents(tiny_model, sae, clean)
    ref = torch.tensor([_reference(tiny_model, sae, corrupted, src, metric, i, slice(None)) for i in latents])
    assert torch.allclose(res.raw, ref, atol=1e-5)
    assert res.raw.std() > 0  # some latents matter
    with torch.no_grad():
        clean_m, corr_m = float(metric(tiny_model(clean)).mean()), float(metric(tiny_model(corrupted)).mean())
    assert res.base_value == pytest.approx(corr_m, abs=1e-5) and res.target_value == pytest.approx(clean_m, abs=1e-5)
    assert torch.allclose(res.values, (res.raw - corr_m) / (clean_m - corr_m), atol=1e-5)
    assert_no_hooks(tiny_model)


def test_latent_by_position_and_ablations(tiny_model, pair):
    clean, corrupted, metric = pair
    sae = make_sae(tiny_model, HOOK)
    latents = [1, 7, 30]
    res = feature_patch(tiny_model, sae, clean, corrupted, metric, latents=latents, by="latent_pos", positions=[2, 5, -1])
    assert res.values.shape == (3, 3) and res.labels["pos"][0].startswith("2:")
    src = _latents(tiny_model, sae, clean)
    for a, i in enumerate(latents):
        for b, p in enumerate([2, 5, 7]):
            assert res.raw[a, b] == pytest.approx(_reference(tiny_model, sae, corrupted, src, metric, i, [p]), abs=1e-5)
    # zero ablation: latents set to 0 on the clean run; mean ablation: to their mean over the corrupted prompts
    zero = feature_patch(tiny_model, sae, clean, None, metric, latents=latents, ablation="zero", normalise=False)
    ref0 = [_reference(tiny_model, sae, clean, torch.zeros(1, 8, 64), metric, i, slice(None)) for i in latents]
    assert torch.allclose(zero.raw, torch.tensor(ref0), atol=1e-5) and zero.direction == "ablation"
    mean = feature_patch(tiny_model, sae, clean, corrupted, metric, latents=latents, ablation="mean")
    mean_src = _latents(tiny_model, sae, corrupted).mean(0, keepdim=True)
    refm = [_reference(tiny_model, sae, clean, mean_src, metric, i, slice(None)) for i in latents]
    assert torch.allclose(mean.raw, torch.tensor(refm), atol=1e-5)
    assert_no_hooks(tiny_model)


def test_every_latent_of_an_exact_sae_at_a_position_is_activation_patching(tiny_model, pair):
    # The identity SAE has no error term, so the set of all its latents at position p is the site at p.
    clean, corrupted, metric = pair
    sae = identity_sae(tiny_model, HOOK)
    act = activation_patch(tiny_model, clean, corrupted, metric, site="resid_post", by="position", layers=0)
    for p in range(8):
        res = feature_patch(tiny_model, sae, clean, corrupted, metric, by="set", positions=[p])
        assert res.dims == ("set",)
        assert float(res.values[0]) == pytest.approx(float(act.values.flatten()[p]), abs=1e-5)
    whole = feature_patch(tiny_model, sae, clean, corrupted, metric, by="set")
    assert float(whole.values[0]) == pytest.approx(1.0, abs=1e-5)  # the whole residual at layer 0: the clean run


def test_unchanged_latents_are_not_run_and_read_the_base(tiny_model, pair):
    clean, _, metric = pair
    sae = make_sae(tiny_model, HOOK)
    res = feature_patch(tiny_model, sae, clean, clean, metric, latents=range(10), normalise=False)
    assert torch.equal(res.raw, torch.full((10,), res.base_value))


def test_bad_inputs_raise_and_leave_no_hooks(tiny_model, pair):
    clean, corrupted, metric = pair
    sae = make_sae(tiny_model, HOOK)
    with pytest.raises(MechinterpError, match="latents"):
        feature_patch(tiny_model, sae, clean, corrupted, metric, latents=[3, 64])
    with pytest.raises(MechinterpError, match="latents"):
        feature_patch(tiny_model, sae, clean, corrupted, metric, latents=[1.5])
    wide = make_sae(tiny_model, HOOK, d_in=40)
    with pytest.raises(ShapeMismatchError, match="sae"):
        feature_patch(tiny_model, wide, clean, corrupted, metric)
    with pytest.raises(MechinterpError, match="by"):
        feature_patch(tiny_model, sae, clean, corrupted, metric, by="head")
    with pytest.raises(MechinterpError, match="positions"):
        feature_patch(tiny_model, sae, clean, corrupted, metric, positions=[9])
    with pytest.raises(ShapeMismatchError):
        feature_patch(tiny_model, sae, clean, corrupted, lambda logits: logits[:, -1, :2], latents=[0, 1, 2, 3])
    assert_no_hooks(tiny_model)
