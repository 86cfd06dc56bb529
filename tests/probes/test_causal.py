"""Causal checks against closed forms on a model without LayerNorm (the logit difference is
then linear in the final residual stream)."""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import ShapeMismatchError
from mechinterp.probes import causal_check, project_out, run_with_direction


@pytest.fixture(scope="module")
def linear_model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=8, d_vocab=20,
                                  act_fn="relu", normalization_type=None, seed=0, device="cpu")
    torch.manual_seed(0)
    return HookedTransformer(cfg).eval()


def test_project_out_is_orthogonal():
    x = torch.randn(5, 3, 16)
    v = torch.randn(16)
    out = project_out(x, v * 7)
    torch.testing.assert_close(out @ v, torch.zeros(5, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(project_out(out, v), out)


def test_steering_and_projection_follow_the_closed_form(linear_model):
    model = linear_model
    tokens = torch.randint(0, 20, (12, 6), generator=torch.Generator().manual_seed(1))
    a, b = 3, 7
    g = (model.W_U[:, a] - model.W_U[:, b]).detach()  # metric gradient w.r.t. the final residual
    metric = lambda logits: logits[:, -1, a] - logits[:, -1, b]  # noqa: E731
    v = torch.randn(16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        resid = cache["blocks.0.hook_resid_post"][:, -1]
        clean = metric(model(tokens))
    signs = torch.tensor([1.0, -1.0] * 6)
    result = causal_check(model, None, v, layer=0, tokens=tokens, metric=metric, scales=[-2.0, 0.0, 3.0],
                          signs=signs, positions="last", n_random=2)
    u = v / v.norm()
    expected_proj = clean - (resid @ u) * (u @ g)
    assert result.metric_projected == pytest.approx(float(expected_proj.mean()), abs=1e-4)
    for s, m, f in zip(result.scales, result.metric_steered, result.flip_steered):
        steered = clean + s * signs * (v @ g)
        assert m == pytest.approx(float(steered.mean()), abs=1e-4)
        assert f == pytest.approx(float((torch.sign(steered) != torch.sign(clean)).float().mean()))
    assert result.flip_steered[1] == 0.0 and result.metric_clean == pytest.approx(float(clean.mean()), abs=1e-5)
    big = causal_check(model, None, g, layer=0, tokens=tokens, metric=metric, scales=[100.0], positions="last", n_random=0)
    assert big.flip_steered[0] == pytest.approx(float((clean < 0).float().mean()))  # all pushed to positive
    assert "condition" in result.to_dataframe().columns and "<img" in result.to_html()
    assert_no_hooks(model)


def test_hooks_removed_after_error(linear_model):
    with pytest.raises(ShapeMismatchError, match="dims"):
        run_with_direction(linear_model, torch.zeros(2, 4, dtype=torch.long), "blocks.0.hook_resid_post", torch.ones(5))
    assert_no_hooks(linear_model)


def test_a_given_metric_is_used_with_a_task(linear_model):
    """Issue 16 item 3: ``metric=`` was ignored when a task was given (``task.metric`` was used)."""
    from types import SimpleNamespace

    model = linear_model
    tokens = torch.randint(0, 20, (4, 6), generator=torch.Generator().manual_seed(3))
    task = SimpleNamespace(clean_tokens=tokens, answer_pos=torch.full((4,), 5),
                           metric=lambda logits: logits[:, -1, 3] - logits[:, -1, 7])
    calls = []

    def mine(logits):
        calls.append(1)
        return logits[:, -1, 1] - logits[:, -1, 2]

    v = torch.randn(16, generator=torch.Generator().manual_seed(2))
    result = causal_check(model, task, v, layer=0, metric=mine, scales=[1.0], n_random=0)
    with torch.no_grad():
        clean = mine(model(tokens))
    assert calls and result.metric_clean == pytest.approx(float(clean.mean()), abs=1e-5)
    assert_no_hooks(model)
