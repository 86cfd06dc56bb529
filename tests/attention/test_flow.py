"""Attention flow: hand-computed max flows, the two-layer closed form, size limits."""

from __future__ import annotations

import pytest
import torch

from mechinterp.attention import FlowTooLargeError, attention_flow, attention_rollout, max_flow_matrix
from mechinterp.errors import MechinterpError, NonFiniteError


def test_one_layer_flow_is_the_capacity():
    caps = torch.tensor([[[1.0, 0.0, 0.0], [0.3, 0.7, 0.0], [0.2, 0.5, 0.3]]])
    torch.testing.assert_close(max_flow_matrix(caps), caps[0])


def test_hand_computed_three_layer_graph():
    # Two tokens, three layers, each Â = [[1, 0], [.5, .5]]. From output token 1:
    #  to input 0: send .5 down 1->0 at the top and .5 down 1->1; both reach (1,0) with
    #  capacity 1 into (0,0): max flow 1.0 (rollout says 1 - .5**3 = .875);
    #  to input 1: the only path stays on token 1: min(.5, .5, .5) = .5.
    caps = torch.tensor([[1.0, 0.0], [0.5, 0.5]]).expand(3, 2, 2)
    flow = max_flow_matrix(caps)
    torch.testing.assert_close(flow, torch.tensor([[1.0, 0.0], [1.0, 0.5]]), atol=1e-9, rtol=0)


def test_two_layer_closed_form():
    # Two layers: the paths (2,q) -> (1,m) -> (0,k) are disjoint, so F[q,k] = sum_m min(Â2[q,m], Â1[m,k]).
    gen = torch.Generator().manual_seed(3)
    n = 5
    logits = torch.randn(2, n, n, generator=gen).masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), -1e9)
    caps = logits.softmax(-1)
    expected = torch.minimum(caps[1][:, :, None], caps[0][None, :, :]).sum(1)
    torch.testing.assert_close(max_flow_matrix(caps), expected, atol=1e-6, rtol=0)


def test_model_flow_equals_closed_form_and_query_subset(uniform_model):
    tokens = torch.tensor([[1, 2, 3, 4]])
    full = attention_flow(uniform_model, tokens)
    u = torch.tril(torch.ones(4, 4)) / torch.arange(1, 5)[:, None]
    a_hat = 0.5 * u + 0.5 * torch.eye(4)
    expected = torch.minimum(a_hat[:, :, None], a_hat[None, :, :]).sum(1)
    torch.testing.assert_close(full.map(0), expected, atol=1e-6, rtol=0)
    one_row = attention_flow(uniform_model, tokens, queries=[-1])
    torch.testing.assert_close(one_row.scores(0), full.scores(0))
    assert one_row.matrix[0, :3].abs().sum() == 0  # rows not asked for stay empty
    # flow and rollout differ (flow is not a product of matrices)
    rollout = attention_rollout(uniform_model, tokens)
    assert not torch.allclose(rollout.scores(0), full.scores(0), atol=1e-3)


def test_size_limit_and_bad_input(tiny_model):
    with pytest.raises(FlowTooLargeError, match="attention_rollout"):
        attention_flow(tiny_model, "w1 w2 w3 w4 w5 w6", max_positions=4)
    with pytest.raises(MechinterpError, match="outside"):
        attention_flow(tiny_model, "w1 w2", queries=[5])
    with pytest.raises(NonFiniteError):
        max_flow_matrix(torch.tensor([[[float("nan")]]]))
