"""Grad-CAM: the closed form on a linear toy, equality with ReLU(gradient × activation) where it holds."""

from __future__ import annotations

import pytest
import torch

from mechinterp.attribution import Metric
from mechinterp.core.hooks import active_hooks
from mechinterp.errors import MechinterpError
from mechinterp.explain import GradCam, grad_cam, grad_cam_map


@pytest.fixture(scope="module")
def linear_toy():
    """One attention-only layer with W_O = 0 and no normalisation: logits = (W_E[x_i] + W_pos[i]) @ W_U + b_U."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, n_ctx=10, d_vocab=20, attn_only=True,
                                  normalization_type=None, seed=0, device="cpu")
    model = HookedTransformer(cfg)
    with torch.no_grad():
        model.blocks[0].attn.W_O.zero_()
        model.blocks[0].attn.b_O.zero_()
    return model


TOKENS = torch.tensor([3, 7, 1, 12, 5, 9])


def test_closed_form_on_a_linear_toy(linear_toy):
    m, t = linear_toy, 4
    cam = grad_cam(m, TOKENS, t)
    A = (m.W_E[TOKENS] + m.W_pos[: len(TOKENS)]).detach()
    u = m.W_U[:, t].detach()
    expected = (A @ u).clamp(min=0) / len(TOKENS)  # α = u / P: the gradient lives at the last position only
    torch.testing.assert_close(cam.maps[0], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cam.raw[0], A @ u / len(TOKENS), atol=1e-5, rtol=1e-5)
    # gradient × activation is zero off the last position there: the two differ
    assert torch.count_nonzero(cam.grad_x_act[0, :-1]) == 0
    with torch.no_grad():
        assert cam.target_value == pytest.approx(float(m(TOKENS[None])[0, -1, t]), abs=1e-5)
    assert active_hooks(m) == []


def test_equals_relu_grad_x_act_when_the_gradient_is_shared(linear_toy):
    """F = Σ_i logit_t(i): the gradient is u at every position, so Grad-CAM = ReLU(gradient × activation)."""
    cam = grad_cam(linear_toy, TOKENS, Metric(lambda logits: logits[:, :, 4].sum(-1), "sum of logits"))
    torch.testing.assert_close(cam.maps[0], cam.grad_x_act[0].clamp(min=0), atol=1e-5, rtol=1e-5)
    assert (cam.raw[0] < 0).any() and (cam.maps[0] >= 0).all()


def test_map_function_and_combination():
    acts = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.0, 1.0]])
    grads = torch.tensor([[1.0, 0.0], [1.0, 3.0], [1.0, 0.0]])  # α = [1, 1]
    cam, raw = grad_cam_map(acts, grads)
    torch.testing.assert_close(raw, torch.tensor([3.0, 2.0, 1.0]))
    torch.testing.assert_close(cam, raw)
    from mechinterp.explain.gradcam import combine

    maps = torch.tensor([[1.0, 3.0], [0.0, 0.0], [2.0, 2.0]])
    torch.testing.assert_close(combine(maps), torch.tensor([(0.25 + 0.5) / 2, (0.75 + 0.5) / 2]))
    with pytest.raises(MechinterpError):
        grad_cam_map(acts, grads[:2])


def test_zoo_model_layers_roundtrip(tmp_path):
    import mechinterp

    model = mechinterp.load("zoo:toy-lm")
    cam = grad_cam(model, "The capital of France is", ("Paris", "Rome"), layers=[0, -1])
    assert cam.layers == [0, 3] and cam.maps.shape == (2, 6)
    assert float(cam.combined.sum()) == pytest.approx(1.0, abs=1e-5)
    back = GradCam.load(cam.save(tmp_path / "cam.json"))
    assert back == cam
    assert "France" in cam.to_html() and cam.plot() is not None
    with pytest.raises(MechinterpError, match="out of range"):
        grad_cam(model, "The capital of France is", "Paris", layers=[7])
    with pytest.raises(MechinterpError, match="site"):
        grad_cam(model, "The capital of France is", "Paris", site="embed")
    with pytest.raises(MechinterpError, match="one target"):
        grad_cam(model, "The capital of France is", Metric(lambda logits: logits[:, -1, :3]))
    assert active_hooks(model) == []


def test_hirescam_is_relu_grad_x_act(linear_toy):
    cam = grad_cam(linear_toy, TOKENS, 4, variant="hirescam")
    torch.testing.assert_close(cam.maps[0], cam.grad_x_act[0].clamp(min=0))
    assert cam.options["variant"] == "hirescam"
    with pytest.raises(MechinterpError, match="variant"):
        grad_cam(linear_toy, TOKENS, 4, variant="scorecam")
