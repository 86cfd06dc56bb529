"""Edge patching equals hook-based patching (plain TransformerLens hooks), batched masks equal single runs."""

from __future__ import annotations

import pytest
import torch

from mechinterp.circuits import Graph, patch_edges, prepare_edge_patching
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import NonFiniteError, PromptTooLongError, ShapeMismatchError

TOL = 1e-5


def _hooked(model, tokens, name, fn):
    return model.run_with_hooks(tokens, fwd_hooks=[(name, fn)])


def test_zero_and_full_masks_are_clean_and_corrupted(tiny_setup):
    model, setup, _ = tiny_setup
    g = setup.graph
    out = patch_edges(model, setup, torch.stack([torch.zeros(g.real.shape), torch.ones(g.real.shape)]))
    assert torch.allclose(out[0], model(setup.tokens), atol=TOL)
    assert torch.allclose(out[1], model(setup.corrupted_tokens), atol=TOL)
    assert_no_hooks(model)
    assert not model.cfg.use_split_qkv_input and not model.cfg.use_hook_mlp_in


def test_all_edges_into_a_receiver_equal_patching_its_input(tiny_setup):
    model, setup, _ = tiny_setup
    g = setup.graph
    _, corr = model.run_with_cache(setup.corrupted_tokens)
    cases = [
        ("L1H2.k", "blocks.1.attn.hook_k", lambda x, hook: torch.cat([x[:, :, :2], corr[hook.name][:, :, 2:3], x[:, :, 3:]], 2)),
        ("L1H1.q", "blocks.1.attn.hook_q", lambda x, hook: torch.cat([x[:, :, :1], corr[hook.name][:, :, 1:2], x[:, :, 2:]], 2)),
        ("L0H3.v", "blocks.0.attn.hook_v", lambda x, hook: torch.cat([x[:, :, :3], corr[hook.name][:, :, 3:]], 2)),
        ("MLP1", "blocks.1.hook_mlp_out", lambda x, hook: corr[hook.name]),
        ("logits", "blocks.1.hook_resid_post", lambda x, hook: corr[hook.name]),
    ]
    for receiver, hook_name, fn in cases:
        mask = torch.zeros(g.real.shape)
        mask[:, g.receiver_index(receiver)] = 1.0
        ours = patch_edges(model, setup, mask)[0]
        assert torch.allclose(ours, _hooked(model, setup.tokens, hook_name, fn), atol=TOL), receiver


def test_one_senders_edges_equal_patching_its_output(tiny_setup):
    model, setup, _ = tiny_setup
    g = setup.graph
    _, corr = model.run_with_cache(setup.corrupted_tokens)
    for sender, hook_name, fn in [
        ("L0H1", "blocks.0.attn.hook_z", lambda x, hook: torch.cat([x[:, :, :1], corr[hook.name][:, :, 1:2], x[:, :, 2:]], 2)),
        ("MLP0", "blocks.0.hook_mlp_out", lambda x, hook: corr[hook.name]),
        ("embed", "blocks.0.hook_resid_pre", lambda x, hook: corr[hook.name]),
    ]:
        mask = torch.zeros(g.real.shape)
        mask[g.sender_index(sender)] = 1.0
        ours = patch_edges(model, setup, mask)[0]
        assert torch.allclose(ours, _hooked(model, setup.tokens, hook_name, fn), atol=TOL), sender


def test_single_edge_to_logits_equals_adding_the_difference(tiny_setup):
    model, setup, _ = tiny_setup
    g = setup.graph
    s = g.sender_index("L0H2")
    _, clean = model.run_with_cache(setup.tokens)
    _, corr = model.run_with_cache(setup.corrupted_tokens)
    w = model.blocks[0].attn.W_O[2]
    delta = (corr["blocks.0.attn.hook_z"][:, :, 2] - clean["blocks.0.attn.hook_z"][:, :, 2]) @ w
    ref = _hooked(model, setup.tokens, "blocks.1.hook_resid_post", lambda x, hook: x + delta)
    mask = torch.zeros(g.real.shape)
    mask[s, g.receiver_index("logits")] = 1
    assert torch.allclose(patch_edges(model, setup, mask)[0], ref, atol=TOL)


def test_zero_ablation_of_a_head_equals_zeroing_its_z(tiny_model, tiny_setup):
    _, setup, _ = tiny_setup
    zero = prepare_edge_patching(tiny_model, setup.tokens, ablation="zero")
    mask = torch.zeros(zero.graph.real.shape)
    mask[zero.graph.sender_index("L1H0")] = 1
    ref = _hooked(tiny_model, setup.tokens, "blocks.1.attn.hook_z",
                  lambda x, hook: torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, 1:]], 2))
    assert torch.allclose(patch_edges(tiny_model, zero, mask)[0], ref, atol=TOL)


def test_batched_masks_equal_separate_runs(tiny_setup):
    model, setup, _ = tiny_setup
    gen = torch.Generator().manual_seed(3)
    masks = (torch.rand(5, *setup.graph.real.shape, generator=gen) < 0.3).float()
    masks[1] = 0.0  # a mask that patches nothing, batched with ones that patch (the dense buffer's zero rows)
    masks[3, :, :-1] = 0.0  # one that patches only edges into the logits
    together = patch_edges(model, setup, masks)
    chunked = patch_edges(model, setup, masks, chunk=2)
    assert torch.allclose(together[1], model(setup.tokens), atol=TOL)
    for i in range(5):
        alone = patch_edges(model, setup, masks[i])[0]
        assert torch.allclose(together[i], alone, atol=TOL) and torch.allclose(chunked[i], alone, atol=TOL)


def test_bad_input_raises_and_restores_model(tiny_model, tiny_setup):
    _, setup, _ = tiny_setup
    with pytest.raises(ShapeMismatchError):
        prepare_edge_patching(tiny_model, setup.tokens, setup.corrupted_tokens[:, :4])
    with pytest.raises(PromptTooLongError):
        prepare_edge_patching(tiny_model, torch.ones(1, 40, dtype=torch.long), torch.ones(1, 40, dtype=torch.long))
    with pytest.raises(ShapeMismatchError):
        patch_edges(tiny_model, setup, torch.zeros(3, 3))
    with pytest.raises(NonFiniteError):
        patch_edges(tiny_model, setup, torch.full(setup.graph.real.shape, float("nan")))
    assert_no_hooks(tiny_model)
    assert not tiny_model.cfg.use_split_qkv_input and not tiny_model.cfg.use_hook_mlp_in
    assert Graph.from_model(tiny_model).n_edges == setup.graph.n_edges


# ----- grouped-query attention (tiny Llama-style model: rotary, RMSNorm, gated MLP, 2 kv heads for 4) -------------


def _gqa_clean(model):
    assert_no_hooks(model)
    cfg = model.cfg
    assert not (cfg.use_split_qkv_input or cfg.use_hook_mlp_in or cfg.ungroup_grouped_query_attention)


def test_gqa_zero_and_full_masks_are_clean_and_corrupted(tiny_gqa):
    model, setup, _ = tiny_gqa
    g = setup.graph
    out = patch_edges(model, setup, torch.stack([torch.zeros(g.real.shape), torch.ones(g.real.shape)]))
    assert torch.allclose(out[0], model(setup.tokens), atol=TOL)
    assert torch.allclose(out[1], model(setup.corrupted_tokens), atol=TOL)
    _gqa_clean(model)


def test_gqa_group_of_key_inputs_equals_patching_the_grouped_models_shared_key(tiny_gqa):
    """Patching s -> k of both heads of kv group 1 is patching kv head 1's key input in the native grouped model."""
    model, setup, _ = tiny_gqa
    g = setup.graph
    _, clean = model.run_with_cache(setup.tokens)
    _, corr = model.run_with_cache(setup.corrupted_tokens)
    head = 1  # sender L0H1: its output is z[:, :, 1] @ W_O[1]
    delta = (corr["blocks.0.attn.hook_z"][:, :, head] - clean["blocks.0.attn.hook_z"][:, :, head]) @ model.blocks[0].attn.W_O[head]

    def add_to_group(x, hook):  # [batch pos kv_head_index d_model] in the grouped model
        assert x.shape[2] == 2  # the native grouped model: one key input per kv head
        x = x.clone()
        x[:, :, 1] += delta
        return x

    model.cfg.use_split_qkv_input = True
    try:
        ref = model.run_with_hooks(setup.tokens, fwd_hooks=[("blocks.1.hook_k_input", add_to_group)])
    finally:
        model.cfg.use_split_qkv_input = False
    mask = torch.zeros(g.real.shape)
    for h in g.kv_heads(2):
        mask[g.sender_index("L0H1"), g.receiver_index(f"L1H{h}.k")] = 1.0
    assert torch.allclose(patch_edges(model, setup, mask)[0], ref, atol=TOL)
    # one head of the group alone is a different intervention (the other head keeps its key)
    mask[g.sender_index("L0H1"), g.receiver_index("L1H3.k")] = 0.0
    assert not torch.allclose(patch_edges(model, setup, mask)[0], ref, atol=TOL)
    _gqa_clean(model)


def test_gqa_flags_are_restored_on_error_and_a_users_flag_is_kept(tiny_gqa):
    model, setup, _ = tiny_gqa
    with pytest.raises(ZeroDivisionError):
        from mechinterp.circuits import edge_mode

        with edge_mode(model):
            assert model.cfg.ungroup_grouped_query_attention
            raise ZeroDivisionError
    _gqa_clean(model)
    model.cfg.ungroup_grouped_query_attention = True  # a user who loaded with TL's flag keeps it
    try:
        out = patch_edges(model, setup, torch.zeros(setup.graph.real.shape))[0]
        assert torch.allclose(out, model(setup.tokens), atol=TOL) and model.cfg.ungroup_grouped_query_attention
    finally:
        model.cfg.ungroup_grouped_query_attention = False


def test_masks_per_pass_fit_the_memory_budget_and_chunking_changes_nothing(tiny_setup, monkeypatch):
    from mechinterp.circuits import engine, max_masks_per_pass, metrics_of_masks

    model, setup, metric = tiny_setup
    g = setup.graph
    per_mask = setup.tokens.numel() * model.cfg.d_model * 4 * (g.n_senders + 3 * g.n_heads)
    assert max_masks_per_pass(model, setup, budget_bytes=3 * per_mask + 1) == 3
    assert max_masks_per_pass(model, setup, budget_bytes=1) == 1
    masks = (torch.rand(5, *g.real.shape, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    together = patch_edges(model, setup, masks)
    values = metrics_of_masks(model, setup, metric, masks)
    monkeypatch.setattr(engine, "max_masks_per_pass", lambda *a, **k: 2)  # as on a 30-layer model
    assert torch.allclose(patch_edges(model, setup, masks), together, atol=TOL)
    alone = torch.stack([metric(patch_edges(model, setup, m)[0]).mean() for m in masks])
    assert torch.allclose(values, alone, atol=TOL)
