"""ActivationStream: every real token exactly once per epoch, padding out, bounded buffer."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.dictionary import ActivationStream
from mechinterp.errors import MechinterpError


def test_each_row_once_per_epoch_and_shuffled():
    x = torch.arange(1000, dtype=torch.float32)[:, None].repeat(1, 3)
    stream = ActivationStream(x, batch_size=64, buffer_size=200, block_rows=50)
    for _ in range(2):
        seen = torch.cat(list(stream))[:, 0]
        assert sorted(seen.tolist()) == list(range(1000))
        assert not torch.equal(seen, torch.arange(1000.0))  # shuffled


def test_cache_site_drops_padding(tiny_model):
    prompts = ["w1 w2 w3 w4 w5", "w6 w7", "w8 w9 w10"]
    cache = mechinterp.SharedCache(tiny_model, prompts, progress=False)
    stream = ActivationStream(cache, ("resid_post", 0), batch_size=4, buffer_size=4, block_rows=1)
    got = torch.cat(list(stream))
    n_real = int(cache.attention_mask.sum())
    assert stream.n_tokens == n_real == len(got)
    acts = cache["resid_post", 0][cache.attention_mask.bool()]
    assert torch.allclose(got[got[:, 0].argsort()], acts[acts[:, 0].argsort()])
    assert stream.hook_name == "blocks.0.hook_resid_post"


def test_paired_sites_stay_aligned(tiny_model):
    cache = mechinterp.SharedCache(tiny_model, ["w1 w2 w3 w4", "w5 w6"], progress=False)
    stream = ActivationStream(cache, ("resid_mid", 1), site_out=("resid_post", 1), batch_size=3, buffer_size=3)
    pairs = list(stream)
    x = torch.cat([p[0] for p in pairs])
    y = torch.cat([p[1] for p in pairs])
    mask = cache.attention_mask.bool()
    mid, post = cache["resid_mid", 1][mask], cache["resid_post", 1][mask]
    for i in range(len(x)):
        j = int((mid - x[i]).abs().sum(-1).argmin())
        assert torch.allclose(y[i], post[j])


def test_bad_sources():
    with pytest.raises(MechinterpError):
        ActivationStream([1, 2, 3])
    with pytest.raises(MechinterpError):
        ActivationStream(torch.randn(0, 4))


def test_skip_first_drops_position_0_of_every_prompt():
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    stream = ActivationStream(x, batch_size=100, skip_first=True)
    assert stream.n_tokens == 8
    rows = torch.cat(list(stream))
    assert rows.shape == (8, 3)
    firsts = {tuple(x[b, 0].tolist()) for b in range(2)}
    assert not firsts & {tuple(r.tolist()) for r in rows}
    with pytest.raises(mechinterp.errors.MechinterpError, match="position axis"):
        ActivationStream(torch.randn(10, 3), skip_first=True)


def test_skip_first_with_a_cache_keeps_padding_out(toy_lm):
    cache = mechinterp.SharedCache(toy_lm, ["the cat sat on the mat", "a dog"], positions="all", progress=False)
    stream = ActivationStream(cache, ("resid_post", 0), batch_size=64, skip_first=True)
    assert stream.n_tokens == int(cache.attention_mask.sum()) - 2


def test_max_norm_drops_massive_activations_and_the_sae_encodes_none_of_them(tmp_path):
    """Two tokens 1000x larger than the rest (a first-token sink, say): the stream leaves them out, the trained SAE
    gets max_input_norm and encodes them as all-zero latents, and the value survives a save / load round trip."""
    from mechinterp.dictionary import load_sae, save_sae, train_sae

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, 8, generator=g)
    x[:, 0] *= 1000.0
    stream = ActivationStream(x, batch_size=64, max_norm=100.0)
    assert stream.n_tokens == 40 * 5 and all(float(b.norm(dim=-1).max()) <= 100.0 for b in stream)
    sae = train_sae(x, architecture="topk", k=2, d_sae=16, batch_size=64, n_epochs=2, max_norm=100.0)
    assert sae.max_input_norm == 100.0
    f = sae.encode(x)
    assert not f[:, 0].any() and f[:, 1:].any()
    assert load_sae(save_sae(sae, tmp_path / "sae")).max_input_norm == 100.0


def test_massive_norm_is_ten_times_the_median_of_positions_after_the_first(toy_lm):
    from mechinterp.dictionary import massive_norm

    cache = mechinterp.SharedCache(toy_lm, ["the cat sat on the mat", "a dog"], positions="all", progress=False)
    acts = cache.get("blocks.1.hook_resid_post")
    real = cache.attention_mask.bool().clone()
    real[:, 0] = False
    norms = acts.float().norm(dim=-1)[real]
    threshold, n_massive = massive_norm(cache, ("resid_post", 1), ratio=1.0)
    assert threshold == pytest.approx(float(norms.median())) and n_massive == int((norms > threshold).sum()) > 0
    assert massive_norm(cache, ("resid_post", 1))[0] == pytest.approx(10 * float(norms.median()))
    with pytest.raises(mechinterp.errors.MechinterpError, match="ratio"):
        massive_norm(cache, ("resid_post", 1), ratio=0.0)
