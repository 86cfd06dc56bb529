"""Latent DLA: the latents, bias and error sum to the site's direct contribution, which is lens DLA's
MLP row for an mlp_out SAE and the whole target (less the bias constant) at the final residual;
logit effects are the first-order change of the logits when the latent's direction is added."""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.hooks import assert_no_hooks
from mechinterp.dictionary import LatentDLA, latent_dla, logit_effects, steer_latent
from mechinterp.errors import MechinterpError, ShapeMismatchError
from mechinterp.lens import direct_logit_attribution

from .conftest import make_sae


@pytest.fixture
def prompts():
    return torch.randint(3, 48, (4, 7), generator=torch.Generator().manual_seed(3))


def test_latents_sum_to_lens_dla_of_the_mlp(tiny_model, prompts):
    sae = make_sae(tiny_model, "blocks.1.hook_mlp_out")
    res = latent_dla(tiny_model, sae, prompts, 5, wrong=6, latents=[0, 3, 9])
    assert isinstance(res, LatentDLA) and res.scores.shape == (3, 4)
    assert torch.allclose(res.total(), res.site_total, atol=1e-5)
    lens = direct_logit_attribution(tiny_model, prompts, torch.tensor([5]), wrong=torch.tensor([6]))
    mlp1 = lens.scores[lens.components.index("MLP1")]
    assert torch.allclose(res.site_total, mlp1, atol=1e-5)
    assert res.error.abs().max() > 0 and res.other.abs().max() > 0  # a random SAE: the error term is real
    every = latent_dla(tiny_model, sae, prompts, 5, wrong=6)  # all latents: nothing left in "other"
    assert torch.allclose(every.other, torch.zeros(4), atol=1e-6)
    assert torch.allclose(every.scores[[0, 3, 9]], res.scores, atol=1e-6)


def test_final_residual_sae_carries_the_whole_logit(tiny_model, prompts):
    sae = make_sae(tiny_model, "blocks.1.hook_resid_post")
    res = latent_dla(tiny_model, sae, prompts, 5, wrong=6, positions="all")
    lens = direct_logit_attribution(tiny_model, prompts, torch.tensor([5]), wrong=torch.tensor([6]), positions="all")
    assert res.site_total.shape == (4, 7)
    assert torch.allclose(res.site_total, lens.target - lens.constant, atol=1e-4)
    assert torch.allclose(res.total(), res.site_total, atol=1e-5)


def _effects(model, sae, latent):
    eff = logit_effects(model, sae, [latent], k=model.cfg.d_vocab)
    full = torch.zeros(model.cfg.d_vocab)
    full[[model.to_single_token(t) if model.tokenizer else int(t) for t in eff.top_tokens[0]]] = eff.top_values[0]
    assert eff.top_values[0][0] >= eff.top_values[0][-1] and eff.bottom_values.shape == (1, model.cfg.d_vocab)
    return full


def test_logit_effects_are_what_adding_the_direction_does_without_a_final_norm(prompts):
    from transformer_lens import HookedTransformerConfig, HookedTransformer

    cfg = HookedTransformerConfig(n_layers=1, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=48,
                                  act_fn="gelu", normalization_type=None, seed=0, device="cpu")
    model = HookedTransformer(cfg).eval()
    sae = make_sae(model, "blocks.0.hook_resid_post")
    full = _effects(model, sae, 4)
    with torch.no_grad():
        base = model(prompts)
        with steer_latent(model, sae, 4, 2.0):
            moved = model(prompts)
    assert torch.allclose((moved - base) / 2.0, full.expand_as(base), atol=1e-4)  # linear readout: exact


def test_latent_dla_is_activation_times_logit_effect_over_the_scale(tiny_model, prompts):
    hook = "blocks.1.hook_resid_post"
    sae = make_sae(tiny_model, hook)
    with torch.no_grad():
        _, cache = tiny_model.run_with_cache(prompts, names_filter=lambda n: n in (hook, "ln_final.hook_scale"))
    latent = int(sae.encode(cache[hook])[:, -1].sum(0).argmax())  # fires at the last position
    full = _effects(tiny_model, sae, latent)
    res = latent_dla(tiny_model, sae, prompts, 5, wrong=6, latents=[latent])
    f = sae.encode(cache[hook])[:, -1, latent]
    assert (f > 0).any() and (res.scores[0] != 0).any()
    expected = f * (full[5] - full[6]) / cache["ln_final.hook_scale"][:, -1, 0]
    assert torch.allclose(res.scores[0], expected, atol=1e-5)
    assert_no_hooks(tiny_model)


def test_bad_inputs(tiny_model, prompts):
    sae = make_sae(tiny_model, "blocks.1.hook_mlp_out")
    with pytest.raises(MechinterpError, match="latents"):
        latent_dla(tiny_model, sae, prompts, 5, latents=[64])
    with pytest.raises(ShapeMismatchError, match="sae"):
        latent_dla(tiny_model, make_sae(tiny_model, "blocks.1.hook_mlp_out", d_in=16), prompts, 5)
    with pytest.raises(MechinterpError, match="residual"):
        latent_dla(tiny_model, make_sae(tiny_model, "blocks.1.mlp.hook_post", d_in=64), prompts, 5)
    with pytest.raises(MechinterpError, match="latents"):
        logit_effects(tiny_model, sae, [-65])
    with pytest.raises(MechinterpError, match="k"):
        logit_effects(tiny_model, sae, [1], k=0)
    assert_no_hooks(tiny_model)
