"""core/fastpath.py: one guard list for every shortcut, and shortcuts that equal TL's plain forward."""

from __future__ import annotations

import copy

import pytest
import torch

from mechinterp.core import fastpath
from mechinterp.core.fastpath import (
    GUARDS, block_rerun_ok, blockers, kv_reuse_ok, last_block_from, local_unembed_ok, prefix_cache, tl_flags, unembed_at,
)


def _with_cfg(model, **changes):
    clone = copy.copy(model)
    clone.cfg = copy.copy(model.cfg)
    for k, v in changes.items():
        setattr(clone.cfg, k, v)
    return clone


@pytest.mark.parametrize("arch", ["OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM"])
def test_olmo_models_take_no_kv_or_block_shortcut_anywhere(tiny_model, arch):
    """The guard lists used to disagree (attribution's had no Olmo exclusion); now every user reads GUARDS."""
    from mechinterp.attribution import forward
    from mechinterp.patching.plan import block_ok, split_ok

    olmo = _with_cfg(tiny_model, original_architecture=arch)
    assert not kv_reuse_ok(olmo) and not block_rerun_ok(olmo)
    assert not split_ok(olmo, []) and not block_ok(olmo, 0, False)
    assert "Olmo-family attention" in blockers(olmo, "kv")
    assert forward.fastpath.kv_reuse_ok(olmo) is False  # attribution's last-block and prefix shortcuts
    assert kv_reuse_ok(tiny_model) and block_rerun_ok(tiny_model) and local_unembed_ok(tiny_model)


@pytest.mark.parametrize("changes, shortcut", [
    ({"positional_embedding_type": "shortformer"}, "kv"), ({"use_qk_norm": True}, "kv"), ({"clip_qkv": 8.0}, "kv"),
    ({"attention_dir": "bidirectional"}, "kv"), ({"use_split_qkv_input": True}, "kv"),
    ({"parallel_attn_mlp": True}, "block"), ({"n_devices": 2}, "unembed"), ({"post_embedding_ln": True}, "embed"),
])
def test_each_guard_rules_out_its_shortcut(tiny_model, changes, shortcut):
    model = _with_cfg(tiny_model, **changes)
    assert blockers(model, shortcut) and not blockers(tiny_model, shortcut)
    assert all(g.rules_out <= {"kv", "block", "unembed", "embed"} for g in GUARDS)


def test_tl_flags_turn_on_and_restore_also_on_error(tiny_model):
    cfg = tiny_model.cfg
    before = (cfg.use_attn_result, cfg.use_split_qkv_input, cfg.use_hook_mlp_in)
    with pytest.raises(RuntimeError):
        with tl_flags(tiny_model, ["blocks.0.attn.hook_result", "blocks.1.hook_q_input"], use_hook_mlp_in=True):
            assert cfg.use_attn_result and cfg.use_split_qkv_input and cfg.use_hook_mlp_in
            raise RuntimeError("boom")
    assert (cfg.use_attn_result, cfg.use_split_qkv_input, cfg.use_hook_mlp_in) == before


def test_last_block_from_a_position_and_unembedding_at_positions_equal_the_full_forward(tiny_model):
    tokens = torch.randint(3, 40, (2, 9), generator=torch.Generator().manual_seed(0))
    n = tiny_model.cfg.n_layers
    with torch.no_grad():
        full = tiny_model(tokens)
        resid = tiny_model(tokens, stop_at_layer=n - 1)  # the input of the last block
        for start in (1, 5, 8):
            out = last_block_from(tiny_model, resid, start)
            logits = unembed_at(tiny_model, out, [out.shape[1] - 1])
            torch.testing.assert_close(logits[:, 0], full[:, -1], atol=1e-5, rtol=1e-5)
        rows = torch.tensor([[2, 7], [0, 8]])
        torch.testing.assert_close(unembed_at(tiny_model, tiny_model(tokens, stop_at_layer=n), rows),
                                   full.gather(1, rows[..., None].expand(-1, -1, full.shape[-1])), atol=1e-5, rtol=1e-5)


def test_a_shared_prefix_in_a_frozen_cache_equals_the_full_forward(tiny_model):
    tokens = torch.randint(3, 40, (3, 8), generator=torch.Generator().manual_seed(1))
    tokens[:, :3] = tokens[0, :3]
    with torch.no_grad():
        full = tiny_model(tokens)
        x = tiny_model.embed(tokens) + tiny_model.pos_embed(tokens)
        cache = prefix_cache(tiny_model, x[:1, :3], 3)
        rest = tiny_model(x[:, 3:], start_at_layer=0, past_kv_cache=cache)
    torch.testing.assert_close(rest, full[:, 3:], atol=1e-5, rtol=1e-5)
    assert fastpath.hooked(tiny_model) is False
