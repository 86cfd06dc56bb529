"""Gradient-weighted rollout: closed form on a one-layer model, target dependence, batching, errors."""

from __future__ import annotations

import pytest
import torch

from mechinterp.attention import attention_rollout, gradient_rollout, relevance_from_gradients
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import MechinterpError, MultiTokenAnswerError, ShapeMismatchError



def test_one_layer_closed_form(one_layer):
    # logit_t[q] = resid[q] . W_U[:, t] + b_U[t], resid[q] = ... + sum_h sum_k A_h[q,k] (v_h[k] W_O[h])
    # so d logit_t[q] / d A_h[q,k] = (v_h[k] W_O[h]) . W_U[:, t] and zero off row q.
    tokens = torch.tensor([[3, 1, 4, 1, 5]])
    q, t = 4, 7
    _, cache = one_layer.run_with_cache(tokens)
    pattern = cache["blocks.0.attn.hook_pattern"][0]  # [head, q, k]
    v = cache["blocks.0.attn.hook_v"][0]  # [pos, head, d_head]
    grad_row = torch.einsum("khd,hdm,m->hk", v, one_layer.W_O[0], one_layer.W_U[:, t])  # [head, k]
    expected = (grad_row * pattern[:, q]).clamp_min(0).mean(0)
    result = gradient_rollout(one_layer, tokens, target=t, query=q)
    torch.testing.assert_close(result.scores(0), expected, atol=1e-5, rtol=1e-4)
    relevance = torch.eye(5)
    relevance[q] += expected
    torch.testing.assert_close(result.map(0), relevance, atol=1e-5, rtol=1e-4)
    assert expected.abs().sum() > 0


def test_relevance_accumulation_by_hand():
    # R = I; R <- R + Ā_l R with Ā_l = mean_h (grad * A)^+
    a = torch.rand(1, 2, 2, 3, 3)
    g = torch.randn(1, 2, 2, 3, 3)
    bars = (a * g).clamp_min(0).mean(2)[0]
    r = torch.eye(3)
    for layer in range(2):
        r = r + bars[layer] @ r
    torch.testing.assert_close(relevance_from_gradients(a, g)[0], r)
    with pytest.raises(ShapeMismatchError):
        relevance_from_gradients(a, g[:, :1])


def test_targets_give_different_maps_plain_rollout_does_not(tiny_model):
    prompt = ["w1 w2 w3 w4 w1 w2"]
    a = gradient_rollout(tiny_model, prompt, target="w3")
    b = gradient_rollout(tiny_model, prompt, target="w9")
    assert not torch.allclose(a.matrix, b.matrix, atol=1e-4)
    assert a.parameters["target"] != b.parameters["target"]
    torch.testing.assert_close(gradient_rollout(tiny_model, prompt, target="w3").matrix, a.matrix)
    # plain rollout has no target: the map is a function of the input alone
    assert torch.equal(attention_rollout(tiny_model, prompt).matrix, attention_rollout(tiny_model, prompt).matrix)


def test_batch_equals_single_prompts_and_target_forms(tiny_model):
    prompts = ["w1 w2 w3 w1 w2", "w5 w6"]
    ids = torch.tensor([10, 11])
    both = gradient_rollout(tiny_model, prompts, target=ids)
    for i, p in enumerate(prompts):
        alone = gradient_rollout(tiny_model, [p], target=int(ids[i]))
        torch.testing.assert_close(both.map(i), alone.map(0), atol=1e-5, rtol=1e-4)
    # a function of the logits gives the same map as the matching token id
    qpos = both.query_positions
    fn = gradient_rollout(tiny_model, prompts, target=lambda logits: logits[torch.arange(2), qpos, ids])
    torch.testing.assert_close(fn.matrix, both.matrix)
    top = gradient_rollout(tiny_model, prompts)  # None: the top prediction
    assert top.parameters["target"] == "top prediction"


def test_works_under_no_grad_and_with_frozen_weights(one_layer):
    tokens = torch.tensor([[3, 1, 4, 1, 5]])
    ref = gradient_rollout(one_layer, tokens, target=2)
    for p in one_layer.parameters():
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            frozen = gradient_rollout(one_layer, tokens, target=2)
    finally:
        for p in one_layer.parameters():
            p.requires_grad_(True)
    torch.testing.assert_close(frozen.matrix, ref.matrix)
    assert all(p.grad is None for p in one_layer.parameters())  # no gradient left on the weights


def test_errors_leave_no_hooks(tiny_model):
    with pytest.raises(MultiTokenAnswerError):
        gradient_rollout(tiny_model, "w1 w2", target="w1 w2")
    with pytest.raises(MechinterpError, match="0.."):
        gradient_rollout(tiny_model, "w1 w2", target=10_000)

    def broken(logits):
        raise MechinterpError("metric failed")

    with pytest.raises(MechinterpError, match="metric failed"):
        gradient_rollout(tiny_model, "w1 w2", target=broken)
    with pytest.raises(ShapeMismatchError):
        gradient_rollout(tiny_model, "w1 w2", target=lambda logits: logits.sum())
    assert_no_hooks(tiny_model)
