"""SparseAutoencoder: the activations of each architecture, decoder-norm folding, errors."""

from __future__ import annotations

import pytest
import torch

from mechinterp.dictionary import SparseAutoencoder
from mechinterp.errors import MechinterpError, ShapeMismatchError


def _sae(arch, **kw):
    torch.manual_seed(0)
    sae = SparseAutoencoder(6, 20, arch, **kw)
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
        if arch == "jumprelu":
            sae.threshold.uniform_(0, 0.5)
    return sae


def test_activations_by_hand():
    x = torch.randn(4, 6)
    relu = _sae("standard")
    pre = (x - relu.b_dec) @ relu.W_enc + relu.b_enc
    assert torch.equal(relu.encode(x), pre.relu())
    top = _sae("topk", k=3)
    f = top.encode(x)
    assert ((f > 0).sum(-1) <= 3).all()
    pre = top.pre_activations(x)
    kept = pre.topk(3, -1).values.relu()
    assert torch.allclose(f.sort(-1, descending=True).values[:, :3], kept.sort(-1, descending=True).values)
    jump = _sae("jumprelu")
    pre = jump.pre_activations(x)
    assert torch.equal(jump.encode(x), pre * (pre > jump.threshold) * (pre > 0))
    assert torch.allclose(relu(x), relu.encode(x) @ relu.W_dec + relu.b_dec)


@pytest.mark.parametrize("arch", ["standard", "jumprelu"])
def test_normalize_decoder_keeps_outputs(arch):
    sae = _sae(arch)
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(20, 1) * 3 + 0.1)
    x = torch.randn(5, 6)
    before = sae(x)
    sae.normalize_decoder()
    assert torch.allclose(sae(x), before, atol=1e-5)
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(20), atol=1e-6)


def test_bad_arguments():
    with pytest.raises(MechinterpError, match="architecture"):
        SparseAutoencoder(4, 8, "gated")
    with pytest.raises(MechinterpError, match="k"):
        SparseAutoencoder(4, 8, "topk")
    with pytest.raises(MechinterpError, match="apply_b_dec_to_input"):
        SparseAutoencoder(4, 8, "standard", d_out=3, apply_b_dec_to_input=True)
    with pytest.raises(ShapeMismatchError, match="width 4"):
        SparseAutoencoder(4, 8, "standard").encode(torch.randn(2, 5))
