"""Per-head SAEs on ``hook_z``: all heads flattened (SAELens's ``reshape_activations="hook_z"``) or one head.

Known answers: the stream's vectors are the cached ``z`` reshaped (or sliced); spliced with the error term the logits
equal the model's bit for bit; spliced without it, they equal a hand-written hook that writes the reconstruction
into ``z``; a one-head SAE leaves the other heads' ``z`` untouched; the checkpoint round-trips (and loads in
sae-lens, which reshapes ``[..., head_index, d_head]`` itself, with equal outputs).
"""

from __future__ import annotations

import json

import pytest
import torch

import mechinterp
from mechinterp.dictionary import ActivationStream, evaluate_sae, load_sae, save_sae, splice, train_sae
from mechinterp.errors import MechinterpError

PROMPTS = [" ".join(f"w{(i * 5 + j * 3) % 40}" for j in range(10)) for i in range(24)]


@pytest.fixture(scope="module")
def cache(tiny_model):
    return mechinterp.SharedCache(tiny_model, PROMPTS, progress=False)


@pytest.fixture(scope="module")
def saes(cache):
    kw = dict(k=4, expansion_factor=2, batch_size=64, n_epochs=4, lr=3e-3)
    return train_sae(cache, ("z", 1), **kw), train_sae(cache, ("z", 1), head=2, **kw)


def test_stream_reads_flattened_heads_or_one_head(cache):
    z = cache.get("blocks.1.attn.hook_z")  # [batch, pos, head_index, d_head]
    mask = cache.attention_mask.bool()
    every = ActivationStream(cache, ("z", 1), batch_size=10_000, buffer_size=10_000, block_rows=1000)
    one = ActivationStream(cache, ("z", 1), batch_size=10_000, buffer_size=10_000, block_rows=1000, head=2)
    assert every.per_head and every.d_in == 4 * 8 and one.d_in == 8
    assert torch.equal(every.sample(10_000), z[mask].flatten(-2))
    assert torch.equal(one.sample(10_000), z[mask][:, 2])
    with pytest.raises(MechinterpError, match="head"):
        ActivationStream(cache, ("z", 1), head=4)
    with pytest.raises(MechinterpError, match="per-head"):
        ActivationStream(cache, ("resid_post", 1), head=0)


def test_per_head_saes_train_and_splice_exactly(tiny_model, saes):
    flat, one = saes
    assert flat.reshape_activations == "hook_z" and flat.d_in == 32 and flat.hook_name == "blocks.1.attn.hook_z"
    assert one.hook_head_index == 2 and one.d_in == 8 and one.reshape_activations == "none"
    assert flat.training_log.explained_variance[-1] > 0.5 and one.training_log.explained_variance[-1] > 0.5
    tokens = tiny_model.to_tokens(PROMPTS[:3])
    clean = tiny_model(tokens)
    for sae in saes:
        with splice(tiny_model, sae) as state:
            assert torch.equal(tiny_model(tokens), clean)
        assert state.latents.shape == (3, tokens.shape[1], sae.d_sae)

    def by_hand(sae):
        def hook(z, hook):  # z: [batch, pos, head_index, d_head]
            z = z.clone()
            if sae.hook_head_index is None:
                return sae(z.flatten(-2)).reshape(z.shape)
            z[:, :, sae.hook_head_index] = sae(z[:, :, sae.hook_head_index])
            return z
        return hook

    seen = {}
    for sae in saes:
        with splice(tiny_model, sae, keep_error=False):
            spliced = tiny_model.run_with_hooks(
                tokens, fwd_hooks=[("blocks.1.attn.hook_z", lambda z, hook: seen.__setitem__(id(sae), z.clone()))])
        expected = tiny_model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", by_hand(sae))])
        assert torch.allclose(spliced, expected, atol=1e-5)
    _, clean_cache = tiny_model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_z")
    z_one = seen[id(one)]
    others = [0, 1, 3]
    assert torch.equal(z_one[:, :, others], clean_cache["blocks.1.attn.hook_z"][:, :, others])  # other heads untouched
    assert not torch.equal(z_one[:, :, 2], clean_cache["blocks.1.attn.hook_z"][:, :, 2])


def test_per_head_evaluation_and_checkpoint(tiny_model, saes, tmp_path):
    flat, one = saes
    for sae in saes:
        result = evaluate_sae(tiny_model, sae, PROMPTS[:8])
        assert result.explained_variance > 0.5 and result.l0 <= 4.0
    save_sae(flat, tmp_path / "flat")
    save_sae(one, tmp_path / "one")
    cfg = json.loads((tmp_path / "flat" / "cfg.json").read_text())
    assert cfg["reshape_activations"] == "hook_z"
    assert json.loads((tmp_path / "one" / "cfg.json").read_text())["metadata"]["hook_head_index"] == 2
    back_flat, back_one = load_sae(tmp_path / "flat"), load_sae(tmp_path / "one")
    assert back_flat.reshape_activations == "hook_z" and back_one.hook_head_index == 2
    z = torch.randn(5, 7, 4, 8)
    assert torch.equal(back_flat.write_site(z, back_flat(back_flat.site_vectors(z))), flat.write_site(z, flat(flat.site_vectors(z))))
    assert torch.equal(back_one(back_one.site_vectors(z)), one(z[..., 2, :]))


def test_sae_lens_reads_our_hook_z_sae(saes, tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    flat, _ = saes
    save_sae(flat, tmp_path)
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path))
    z = torch.randn(5, 7, 4, 8)
    with torch.no_grad():
        assert torch.allclose(theirs.encode(z), flat.encode(z.flatten(-2)), atol=1e-6)
        assert torch.allclose(theirs(z), flat(z.flatten(-2)).reshape(z.shape), atol=1e-6)
