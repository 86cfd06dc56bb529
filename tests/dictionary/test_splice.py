"""Splicing: the error-kept forward equals the clean run; dropping it changes the logits by
exactly what the reconstruction changes; latent edits act through the decoder; hooks go."""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.hooks import assert_no_hooks
from mechinterp.dictionary import SparseAutoencoder, splice
from mechinterp.errors import MechinterpError, UnknownSiteError

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture
def sae(tiny_model):
    torch.manual_seed(0)
    return SparseAutoencoder(tiny_model.cfg.d_model, 64, "topk", k=6, hook_name=HOOK)


@pytest.fixture
def tokens():
    return torch.randint(3, 48, (3, 10), generator=torch.Generator().manual_seed(0))


def test_error_kept_is_exact(tiny_model, sae, tokens):
    clean = tiny_model(tokens)
    with splice(tiny_model, sae) as state:
        spliced = tiny_model(tokens)
    assert torch.allclose(spliced, clean, atol=1e-5, rtol=0)
    assert torch.equal(spliced, clean)  # bit for bit: x + (x̂ - x̂)
    assert state.latents.shape == (3, 10, 64) and state.n_calls == 1
    assert_no_hooks(tiny_model)


def test_error_dropped_runs_on_the_reconstruction(tiny_model, sae, tokens):
    def replace(act, hook):
        return sae(act)

    with tiny_model.hooks(fwd_hooks=[(HOOK, replace)]):
        expected = tiny_model(tokens)
    with splice(tiny_model, sae, keep_error=False):
        spliced = tiny_model(tokens)
    assert torch.allclose(spliced, expected, atol=1e-6)
    assert not torch.allclose(spliced, tiny_model(tokens), atol=1e-3)  # a random SAE does change the output


def test_latent_edit_adds_its_decoder_direction(tiny_model, sae, tokens):
    """Adding 2.0 to latent 5 everywhere (error kept) = adding 2·W_dec[5] to the residual."""
    def steer(f):
        f = f.clone()
        f[..., 5] += 2.0
        return f

    def add(act, hook):
        return act + 2.0 * sae.W_dec[5]

    with tiny_model.hooks(fwd_hooks=[(HOOK, add)]):
        expected = tiny_model(tokens)
    with splice(tiny_model, sae, edit=steer):
        steered = tiny_model(tokens)
    assert torch.allclose(steered, expected, atol=1e-5)


def test_gradient_reaches_latents(tiny_model, sae, tokens):
    with splice(tiny_model, sae) as state:
        logits = tiny_model(tokens)
        state.latents.retain_grad()
        logits[:, -1, 7].sum().backward()
    grad = state.latents.grad
    assert grad is not None and grad.abs().sum() > 0


def test_transcoder_splice_exact_and_reconstruction(tiny_model, tokens):
    torch.manual_seed(1)
    d = tiny_model.cfg.d_model
    tc = SparseAutoencoder(d, 48, "standard", d_out=d, hook_name="blocks.1.ln2.hook_normalized",
                           hook_name_out="blocks.1.hook_mlp_out")
    clean = tiny_model(tokens)
    with splice(tiny_model, tc):
        assert torch.equal(tiny_model(tokens), clean)
    seen = {}

    def read(act, hook):
        seen["x"] = act

    def write(act, hook):
        return tc(seen["x"])

    with tiny_model.hooks(fwd_hooks=[("blocks.1.ln2.hook_normalized", read), ("blocks.1.hook_mlp_out", write)]):
        expected = tiny_model(tokens)
    with splice(tiny_model, tc, keep_error=False):
        assert torch.allclose(tiny_model(tokens), expected, atol=1e-6)
    assert_no_hooks(tiny_model)


def test_hooks_removed_on_error_and_bad_input(tiny_model, sae, tokens):
    with pytest.raises(RuntimeError, match="boom"):
        with splice(tiny_model, sae):
            raise RuntimeError("boom")
    assert_no_hooks(tiny_model)
    wrong = SparseAutoencoder(tiny_model.cfg.d_model + 1, 8, "standard", hook_name=HOOK)
    with pytest.raises(MechinterpError, match="width"):
        with splice(tiny_model, wrong):
            tiny_model(tokens)
    assert_no_hooks(tiny_model)
    with pytest.raises(UnknownSiteError):
        with splice(tiny_model, sae, "blocks.9.hook_resid_post"):
            pass
    with pytest.raises(MechinterpError, match="hook_name"):
        with splice(tiny_model, SparseAutoencoder(tiny_model.cfg.d_model, 8, "standard")):
            pass


def test_skip_first_leaves_position_0_as_the_model_computes_it(tiny_model, sae, tokens):
    seen = {}
    with tiny_model.hooks(fwd_hooks=[(HOOK, lambda act, hook: seen.__setitem__("x", act.clone()))]):
        tiny_model(tokens)

    def expected_site(act, hook):  # reconstruction everywhere but position 0
        out = sae(act)
        out[:, 0] = act[:, 0]
        return out

    with tiny_model.hooks(fwd_hooks=[(HOOK, expected_site)]):
        expected = tiny_model(tokens)
    with splice(tiny_model, sae, keep_error=False, skip_first=True) as state:
        spliced = tiny_model(tokens)
    torch.testing.assert_close(spliced, expected, atol=1e-6, rtol=0)
    assert state.latents.shape == (3, 10, 64)  # position 0's latents are still reported
    with splice(tiny_model, sae, keep_error=False):
        assert not torch.allclose(tiny_model(tokens), expected, atol=1e-4)
    assert_no_hooks(tiny_model)


def test_tokens_above_max_input_norm_pass_through(tiny_model, sae, tokens):
    seen = {}
    with tiny_model.hooks(fwd_hooks=[(HOOK, lambda act, hook: seen.__setitem__("x", act.clone()))]):
        clean = tiny_model(tokens)
    norms = seen["x"].detach().norm(dim=-1)
    sae.max_input_norm = float(norms.median().detach())  # about half the tokens count as "massive"
    try:
        big = norms > sae.max_input_norm

        def expected_site(act, hook):
            out = sae(act)
            out[big] = act[big]
            return out

        with tiny_model.hooks(fwd_hooks=[(HOOK, expected_site)]):
            expected = tiny_model(tokens)
        with splice(tiny_model, sae, keep_error=False) as state:
            spliced = tiny_model(tokens)
        torch.testing.assert_close(spliced, expected, atol=1e-6, rtol=0)
        assert not state.latents[big].any() and state.latents[~big].any()
        with splice(tiny_model, sae) as state:  # with the error term: exact
            assert torch.equal(tiny_model(tokens), clean)
    finally:
        sae.max_input_norm = None
    assert_no_hooks(tiny_model)
