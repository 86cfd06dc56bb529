"""Attention rollout: row-stochastic, identity, closed forms (hand patterns and a hand-built model)."""

from __future__ import annotations

import pytest
import torch

from mechinterp import SharedCache
from mechinterp.attention import attention_rollout, augment_with_residual, fuse_heads, rollout_from_patterns
from mechinterp.errors import MechinterpError, NonFiniteError, ShapeMismatchError


def _random_patterns(batch=3, layers=4, heads=3, n=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, layers, heads, n, n, generator=gen)
    scores = scores.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), -float("inf"))
    return scores.softmax(-1)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_rows_sum_to_one(fusion):
    out = rollout_from_patterns(_random_patterns(), head_fusion=fusion)
    torch.testing.assert_close(out.sum(-1), torch.ones(3, 6))
    assert (out >= 0).all() and torch.equal(out, torch.tril(out))  # causal stays causal


def test_identity_attention_gives_identity():
    eye = torch.eye(5).expand(2, 3, 4, 5, 5)
    for fusion in ("mean", "max", "min"):
        torch.testing.assert_close(rollout_from_patterns(eye, head_fusion=fusion), torch.eye(5).expand(2, 5, 5))


def test_two_layer_closed_form_by_hand():
    # two tokens, one head; A_l = [[1, 0], [p_l, 1 - p_l]]  ->  Â_l = [[1, 0], [p_l/2, 1 - p_l/2]]
    p1, p2 = 0.6, 0.2
    patterns = torch.tensor([[[[1.0, 0.0], [p1, 1 - p1]]], [[[1.0, 0.0], [p2, 1 - p2]]]])[None]
    out = rollout_from_patterns(patterns)[0]
    expected_10 = p2 / 2 + (1 - p2 / 2) * p1 / 2
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0], [expected_10, 1 - expected_10]]))


def test_head_fusion_and_residual_weight():
    pats = _random_patterns(batch=1, layers=1, heads=3, n=4)
    for fusion, fn in (("mean", lambda x: x.mean(2)), ("max", lambda x: x.amax(2)), ("min", lambda x: x.amin(2))):
        a = fn(pats)[0, 0]
        expected = 0.3 * a + 0.7 * torch.eye(4)
        expected = expected / expected.sum(-1, keepdim=True)
        torch.testing.assert_close(rollout_from_patterns(pats, head_fusion=fusion, residual_weight=0.7)[0], expected)
    torch.testing.assert_close(fuse_heads(pats, "max"), pats.amax(2))
    # w = 0: the plain product of head-averaged attention
    torch.testing.assert_close(
        augment_with_residual(fuse_heads(pats), 0.0), fuse_heads(pats)
    )


def test_start_and_end_layer_select_the_product():
    pats = _random_patterns(batch=2, layers=4)
    aug = augment_with_residual(fuse_heads(pats))
    torch.testing.assert_close(rollout_from_patterns(pats, start_layer=1, end_layer=3), aug[:, 2] @ aug[:, 1])
    torch.testing.assert_close(rollout_from_patterns(pats, start_layer=3), aug[:, 3])


def test_uniform_model_matches_closed_form(uniform_model):
    # W_Q = 0: A[q, k] = 1/(q+1); Â = 0.5 U + 0.5 I; two layers -> Â², row 2 = [23, 17, 32] / 72
    result = attention_rollout(uniform_model, torch.tensor([[1, 2, 3]]))
    u = torch.tril(torch.ones(3, 3)) / torch.arange(1, 4)[:, None]
    a_hat = 0.5 * u + 0.5 * torch.eye(3)
    torch.testing.assert_close(result.map(0), a_hat @ a_hat)
    torch.testing.assert_close(result.scores(0), torch.tensor([23.0, 17.0, 32.0]) / 72)
    assert result.method == "rollout" and result.parameters["head_fusion"] == "mean"


def test_padded_batch_equals_single_prompts(tiny_model):
    prompts = ["w1 w2 w3 w4 w5 w1", "w7 w8"]
    both = attention_rollout(tiny_model, prompts)
    for i, p in enumerate(prompts):
        alone = attention_rollout(tiny_model, [p])
        torch.testing.assert_close(both.map(i), alone.map(0))
        torch.testing.assert_close(both.scores(i), alone.scores(0))
    assert both.token_scores[1, 3:].abs().sum() == 0  # padding scores are zero


def test_reads_a_shared_cache_without_a_new_pass(tiny_model):
    cache = SharedCache(tiny_model, ["w1 w2 w3 w1 w2"], positions="all")
    cache.stack("pattern")
    passes = cache.n_forward_passes
    result = attention_rollout(tiny_model, cache, query=2)
    assert cache.n_forward_passes == passes
    assert int(result.query_positions[0]) == 2
    torch.testing.assert_close(result.scores(0), result.map(0)[2])


def test_plain_rollout_does_not_depend_on_anything_but_the_input(tiny_model):
    # The counterpart of the gradient-rollout target test: same input -> the very same map.
    a = attention_rollout(tiny_model, ["w1 w2 w3 w1 w2"])
    b = attention_rollout(tiny_model, ["w1 w2 w3 w1 w2"])
    assert torch.equal(a.matrix, b.matrix)


def test_bad_input():
    with pytest.raises(ShapeMismatchError):
        rollout_from_patterns(torch.rand(2, 3, 3))
    with pytest.raises(MechinterpError, match="head_fusion"):
        rollout_from_patterns(_random_patterns(), head_fusion="median")
    with pytest.raises(MechinterpError, match="start_layer"):
        rollout_from_patterns(_random_patterns(), start_layer=4)
    with pytest.raises(MechinterpError, match="residual_weight"):
        rollout_from_patterns(_random_patterns(), residual_weight=1.5)
    nan = _random_patterns()
    nan[0, 0, 0, 1, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        rollout_from_patterns(nan)
