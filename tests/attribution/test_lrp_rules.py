"""Every LRP rule, applied as a gradient modification, against its closed form."""

from __future__ import annotations

import torch

from mechinterp.attribution.lrp_rules import divide_gradient, epsilon_rule, gated_rule, identity_rule, softmax_relevance, stabilise, stop_gradient

torch.manual_seed(0)


def test_epsilon_rule_on_a_linear_layer():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    w, b, r = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    eps = 0.5
    y = w @ x + b
    (epsilon_rule(y, eps) * r).sum().backward()
    relevance_out = y.detach() * r
    closed = x.detach() * (w.T @ (relevance_out / stabilise(y.detach(), eps)))
    torch.testing.assert_close(x.detach() * x.grad, closed)


def test_identity_rule_passes_relevance_through():
    x = torch.randn(10, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.gelu(x)
    out = identity_rule(x, y, eps=0.0)
    assert torch.equal(out, y)  # forward unchanged
    r = torch.randn(10, dtype=torch.float64)
    (out * r).sum().backward()
    torch.testing.assert_close(x.detach() * x.grad, y.detach() * r)  # R_x = R_y element-wise


def test_uniform_rule_for_a_matmul():
    a = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = a @ b
    r = torch.randn(2, 4, dtype=torch.float64)
    (divide_gradient(y, 2.0) * r).sum().backward()
    relevance_out = y.detach() * r
    share = a.detach().unsqueeze(-1) * b.detach().unsqueeze(0) * (relevance_out / y.detach()).unsqueeze(1)  # [i, j, k]
    torch.testing.assert_close(a.detach() * a.grad, 0.5 * share.sum(-1))
    torch.testing.assert_close(b.detach() * b.grad, 0.5 * share.sum(0))
    total = (a.detach() * a.grad).sum() + (b.detach() * b.grad).sum()
    torch.testing.assert_close(total, relevance_out.sum())  # conservative


def test_softmax_taylor_rule_is_gradient_times_input():
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    s = x.softmax(-1)
    r = torch.randn(4, 6, dtype=torch.float64)
    (s * r).sum().backward()
    torch.testing.assert_close(x.detach() * x.grad, softmax_relevance(x.detach(), s.detach() * r))


def test_layernorm_scale_as_constant_is_linear_and_conservative():
    n = 6
    x = torch.randn(n, dtype=torch.float64, requires_grad=True)
    gamma, r = torch.randn(n, dtype=torch.float64), torch.randn(n, dtype=torch.float64)
    centred = x - x.mean()
    scale = stop_gradient((centred.pow(2).mean() + 1e-5).sqrt())
    y = centred / scale * gamma
    (y * r).sum().backward()
    m = gamma.unsqueeze(1) * (torch.eye(n, dtype=torch.float64) - 1.0 / n) / scale  # dy/dx with σ constant
    torch.testing.assert_close(x.detach() * x.grad, x.detach() * (m.T @ r))
    torch.testing.assert_close((x.detach() * x.grad).sum(), (y.detach() * r).sum())


def test_gated_rule_splits_the_product_relevance_between_gate_and_up():
    gate = torch.randn(7, dtype=torch.float64, requires_grad=True)
    up = torch.randn(7, dtype=torch.float64, requires_grad=True)
    act = torch.nn.functional.silu(gate.detach())
    r = torch.randn(7, dtype=torch.float64)
    out = act * up.detach() + 0.3  # a bias after the product, as TL's GatedMLP adds b_in
    y = gated_rule(gate, up, out, torch.nn.functional.silu, "attn_lrp", eps=0.0)
    assert torch.equal(y, out)  # forward unchanged
    (y * r).sum().backward()
    product_relevance = act * up.detach() * r  # the bias's share (0.3 r) is absorbed
    torch.testing.assert_close(gate.detach() * gate.grad, product_relevance / 2)  # identity rule after the uniform rule
    torch.testing.assert_close(up.detach() * up.grad, product_relevance / 2)


def test_cp_gated_rule_holds_the_gate_constant():
    gate = torch.randn(7, dtype=torch.float64, requires_grad=True)
    up = torch.randn(7, dtype=torch.float64, requires_grad=True)
    act = torch.nn.functional.gelu(gate.detach())
    r = torch.randn(7, dtype=torch.float64)
    (gated_rule(gate, up, act * up.detach(), torch.nn.functional.gelu, "cp_lrp") * r).sum().backward()
    assert gate.grad is None
    torch.testing.assert_close(up.detach() * up.grad, act * up.detach() * r)  # all the product's relevance
