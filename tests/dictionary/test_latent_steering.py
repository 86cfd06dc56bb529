"""Steering with a latent: adding equals lens steering with the latent's vector; clamping and scaling equal
``splice`` with the latent edited (error kept); positions restrict the edit; hooks go, also on error."""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.hooks import assert_no_hooks
from mechinterp.core.intervention import Intervention
from mechinterp.dictionary import SparseAutoencoder, latent_intervention, latent_steering_vector, splice, steer_latent
from mechinterp.errors import MechinterpError, ShapeMismatchError
from mechinterp.lens import SteeringVector, steering_hooks

from .conftest import make_sae

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture
def tokens():
    return torch.randint(3, 48, (2, 6), generator=torch.Generator().manual_seed(5))


def _spliced(model, sae, tokens, edit):
    with torch.no_grad(), splice(model, sae, edit=edit):
        return model(tokens)


def test_add_is_lens_steering_with_the_decoder_direction(tiny_model, tokens):
    sae = make_sae(tiny_model, HOOK)
    vec = latent_steering_vector(tiny_model, sae, 7)
    assert isinstance(vec, SteeringVector) and vec.hook == HOOK and torch.equal(vec.vector, sae.W_dec[7].detach())
    with torch.no_grad():
        with steer_latent(tiny_model, sae, 7, 3.0):
            ours = tiny_model(tokens)
        with steering_hooks(tiny_model, vec, scale=3.0):
            lens = tiny_model(tokens)
        plain = tiny_model(tokens)
    assert torch.allclose(ours, lens, atol=1e-6) and not torch.allclose(ours, plain, atol=1e-3)


@pytest.mark.parametrize(("mode", "value"), [("clamp", 4.0), ("clamp", 0.0), ("scale", 0.0), ("scale", 2.5)])
def test_clamp_and_scale_equal_splice_with_the_latent_edited(tiny_model, tokens, mode, value):
    sae = make_sae(tiny_model, HOOK)
    with torch.no_grad(), splice(tiny_model, sae) as state:
        tiny_model(tokens)
    latent = int(state.latents[0, 2].argmax())  # a latent that fires

    def edit(f):
        f = f.clone()
        f[..., latent] = value if mode == "clamp" else value * f[..., latent]
        return f

    with torch.no_grad(), steer_latent(tiny_model, sae, latent, value, mode=mode):
        ours = tiny_model(tokens)
    assert torch.allclose(ours, _spliced(tiny_model, sae, tokens, edit), atol=1e-5)
    assert isinstance(latent_intervention(tiny_model, sae, latent, value, mode=mode), Intervention)


def test_positions_restrict_the_edit(tiny_model, tokens):
    sae = make_sae(tiny_model, HOOK)
    with torch.no_grad():
        plain = tiny_model(tokens)
        with steer_latent(tiny_model, sae, 3, 5.0, positions=[4]):
            steered = tiny_model(tokens)
    assert torch.allclose(steered[:, :4], plain[:, :4], atol=1e-6)  # causal: earlier positions untouched
    assert not torch.allclose(steered[:, 4], plain[:, 4], atol=1e-3)


def test_bad_inputs_raise_and_hooks_go_on_error(tiny_model, tokens):
    sae = make_sae(tiny_model, HOOK)
    with pytest.raises(MechinterpError, match="latent"):
        steer_latent(tiny_model, sae, 64, 1.0).__enter__()
    with pytest.raises(MechinterpError, match="mode"):
        latent_intervention(tiny_model, sae, 1, 1.0, mode="push")
    with pytest.raises(MechinterpError, match="value"):
        latent_intervention(tiny_model, sae, 1, float("nan"))
    with pytest.raises(ShapeMismatchError, match="sae"):
        latent_intervention(tiny_model, make_sae(tiny_model, HOOK, d_in=20), 1, 1.0)
    transcoder = SparseAutoencoder(32, 64, "topk", k=4, d_out=32, hook_name="blocks.0.ln2.hook_normalized",
                                   hook_name_out="blocks.0.hook_mlp_out")
    with pytest.raises(MechinterpError, match="transcoder"):
        latent_intervention(tiny_model, transcoder, 1, 1.0, mode="clamp")
    with pytest.raises(RuntimeError), steer_latent(tiny_model, sae, 1, 1.0):
        raise RuntimeError("boom")
    assert_no_hooks(tiny_model)
