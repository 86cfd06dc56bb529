"""SAELens checkpoint format: our round trip, and (when `sae-lens` is installed) the peer's.

The peer tests run only where `sae-lens` imports (it is not a dependency of this project;
it installs with TransformerLens 3.9 into a separate virtual environment). They check both
directions: an SAE saved by sae-lens loads here with equal latents and reconstructions
(1e-6), and ours loads in sae-lens with the same outputs.
"""

from __future__ import annotations

import json

import pytest
import torch

from mechinterp.dictionary import SparseAutoencoder, load_sae, save_sae
from mechinterp.errors import MechinterpError

CASES = [("standard", {}), ("topk", {"k": 5}), ("jumprelu", {})]


def _random_sae(architecture, kw, **extra):
    torch.manual_seed(0)
    sae = SparseAutoencoder(12, 40, architecture, hook_name="blocks.1.hook_resid_post", model_name="toy", **kw, **extra)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.1 * torch.randn_like(p))
        if architecture == "jumprelu":
            sae.threshold.copy_(torch.rand(40) * 0.3)
    return sae


@pytest.mark.parametrize("architecture, kw", CASES)
def test_round_trip_equal_outputs(tmp_path, architecture, kw):
    sae = _random_sae(architecture, kw)
    save_sae(sae, tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == architecture and cfg["d_in"] == 12 and cfg["d_sae"] == 40
    assert cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
    back = load_sae(tmp_path)
    x = torch.randn(7, 12)
    assert torch.equal(back.encode(x), sae.encode(x)) and torch.equal(back(x), sae(x))
    assert back.hook_name == sae.hook_name and back.k == sae.k


def test_transcoder_round_trip(tmp_path):
    torch.manual_seed(0)
    tc = SparseAutoencoder(12, 40, "standard", d_out=9, hook_name="blocks.0.ln2.hook_normalized", hook_name_out="blocks.0.hook_mlp_out")
    save_sae(tc, tmp_path)
    assert json.loads((tmp_path / "cfg.json").read_text())["architecture"] == "transcoder"
    back = load_sae(tmp_path)
    x = torch.randn(3, 12)
    assert back.is_transcoder and back.hook_name_out == "blocks.0.hook_mlp_out" and torch.equal(back(x), tc(x))


def test_errors(tmp_path):
    with pytest.raises(MechinterpError, match="not a SAELens checkpoint"):
        load_sae(tmp_path)
    save_sae(_random_sae("standard", {}), tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    cfg["architecture"] = "gated"
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(MechinterpError, match="gated"):
        load_sae(tmp_path)


def test_pre_6_config_is_read(tmp_path):
    save_sae(_random_sae("topk", {"k": 5}), tmp_path)
    cfg = {"d_in": 12, "d_sae": 40, "dtype": "float32", "hook_point": "blocks.1.hook_resid_post",
           "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 5}, "sae_lens_version": "3.1.0"}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    back = load_sae(tmp_path)
    assert back.architecture == "topk" and back.k == 5 and back.hook_name == "blocks.1.hook_resid_post"


# ----------------------------------------------------------------- the peer: sae-lens
@pytest.mark.parametrize("architecture, kw", CASES)
def test_sae_lens_loads_ours_with_equal_outputs(tmp_path, architecture, kw):
    sae_lens = pytest.importorskip("sae_lens")
    ours = _random_sae(architecture, kw)
    save_sae(ours, tmp_path)
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path))
    x = torch.randn(6, 12)
    with torch.no_grad():
        assert torch.allclose(theirs.encode(x), ours.encode(x), atol=1e-6)
        assert torch.allclose(theirs.decode(theirs.encode(x)), ours(x), atol=1e-6)


@pytest.mark.parametrize("architecture, kw", CASES)
def test_ours_loads_sae_lens_saved(tmp_path, architecture, kw):
    sae_lens = pytest.importorskip("sae_lens")
    classes = {"standard": ("StandardSAE", "StandardSAEConfig"), "topk": ("TopKSAE", "TopKSAEConfig"),
               "jumprelu": ("JumpReLUSAE", "JumpReLUSAEConfig")}
    sae_cls, cfg_cls = (getattr(sae_lens, n) for n in classes[architecture])
    torch.manual_seed(1)
    theirs = sae_cls(cfg_cls(d_in=12, d_sae=40, **kw))
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        if architecture == "jumprelu":
            theirs.threshold.copy_(torch.rand(40) * 0.3)
    theirs.save_model(str(tmp_path))
    ours = load_sae(tmp_path)
    x = torch.randn(6, 12)
    with torch.no_grad():
        assert torch.allclose(ours.encode(x), theirs.encode(x), atol=1e-6)
        assert torch.allclose(ours(x), theirs.decode(theirs.encode(x)), atol=1e-6)


def test_sae_lens_topk_with_decoder_norm_rescaling_loads(tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    torch.manual_seed(2)
    theirs = sae_lens.TopKSAE(sae_lens.TopKSAEConfig(d_in=12, d_sae=40, k=5, rescale_acts_by_decoder_norm=True))
    with torch.no_grad():
        theirs.W_dec.mul_(torch.rand(40, 1) * 3 + 0.2)  # decoder rows of unequal norms
    theirs.save_model(str(tmp_path))
    ours = load_sae(tmp_path)
    x = torch.randn(6, 12)
    with torch.no_grad():
        assert torch.allclose(ours.encode(x), theirs.encode(x), atol=1e-5)
        assert torch.allclose(ours(x), theirs.decode(theirs.encode(x)), atol=1e-5)
