"""The shared cache against TransformerLens's run_with_cache, on disk and in memory."""

from __future__ import annotations

import torch
import pytest

from mechinterp import SharedCache
from mechinterp.errors import EmptyInputError, MechinterpError, PromptTooLongError, UnknownSiteError

SAME = ["w1 w2 w3 w4 w5", "w6 w7 w8 w9 w10", "w11 w12 w13 w14 w15", "w3 w3 w3 w3 w3"]
RAGGED = ["w1 w2 w3 w4 w5 w6 w7", "w8 w9", "w10 w11 w12 w13", "w14", "w5 w6 w7 w8 w9 w10 w11 w12"]


def test_equals_run_with_cache_exactly(tiny_model):
    cache = SharedCache(tiny_model, SAME, batch_size=4)
    _, ref = tiny_model.run_with_cache(tiny_model.to_tokens(SAME))
    for site in ["resid_post", "pattern", "z", "mlp_post", "attn_out"]:
        for layer in range(2):
            name = cache.fetch([(site, layer)])[0]
            assert torch.equal(cache[site, layer], ref[name]), name
    assert torch.equal(cache["embed"], ref["hook_embed"])


def test_ragged_prompts_match_single_prompt_runs(tiny_model):
    cache = SharedCache(tiny_model, RAGGED, batch_size=2)
    resid = cache["resid_post", 1]
    pattern = cache["pattern", 0]
    for i, prompt in enumerate(RAGGED):
        _, ref = tiny_model.run_with_cache(prompt)
        n = int(cache.lengths[i])
        torch.testing.assert_close(resid[i, :n], ref["blocks.1.hook_resid_post"][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(pattern[i, :, :n, :n], ref["blocks.0.attn.hook_pattern"][0], atol=1e-6, rtol=1e-5)
        assert torch.all(resid[i, n:] == 0)


def test_left_padding_matches_right_padding(tiny_model):
    right = SharedCache(tiny_model, RAGGED, positions="last", batch_size=8)
    left = SharedCache(tiny_model, RAGGED, positions="last", batch_size=8, padding_side="left")
    torch.testing.assert_close(left["resid_post", 1], right["resid_post", 1], atol=1e-4, rtol=1e-4)


def test_position_selection(tiny_model):
    full = SharedCache(tiny_model, RAGGED, batch_size=3)
    last = SharedCache(tiny_model, RAGGED, positions="last", batch_size=3)
    picked = SharedCache(tiny_model, RAGGED, positions=[0, -1], batch_size=3)
    resid, pattern = full["resid_pre", 1], full["pattern", 1]
    rows = torch.arange(len(RAGGED))
    ends = full.lengths - 1
    torch.testing.assert_close(last["resid_pre", 1], resid[rows, ends], atol=0, rtol=0)
    torch.testing.assert_close(picked["resid_pre", 1][:, 0], resid[:, 0], atol=0, rtol=0)
    torch.testing.assert_close(picked["resid_pre", 1][:, 1], resid[rows, ends], atol=0, rtol=0)
    assert last["pattern", 1].shape == (5, 4, full.tokens.shape[1])  # [prompt, head, key_pos]
    torch.testing.assert_close(last["pattern", 1], pattern[rows, :, ends], atol=0, rtol=0)


def test_spilled_values_equal_in_memory(tiny_model, tmp_path):
    memory = SharedCache(tiny_model, RAGGED, batch_size=2)
    disk = SharedCache(tiny_model, RAGGED, batch_size=2, memory_budget=0, spill_dir=tmp_path)
    for site in [("resid_post", 0), ("pattern", 1), ("z", 1)]:
        assert torch.equal(disk[site], memory[site])
    assert disk.memory_bytes == 0 and len(disk.spilled) == 3
    assert disk.spill_folder.parent == tmp_path and sorted(p.suffix for p in disk.spill_folder.iterdir()) == [".npy"] * 3


def test_budget_keeps_small_sites_in_memory(tiny_model, tmp_path):
    cache = SharedCache(tiny_model, RAGGED, positions="last", memory_budget="1KB", spill_dir=tmp_path)
    cache.fetch(["resid_post"])  # 5 prompts x 32 floats = 640 B per layer: one fits, the second spills
    assert cache.memory_bytes == 640 and len(cache.spilled) == 1


def test_memoised_and_stops_at_deepest_layer(tiny_model):
    cache = SharedCache(tiny_model, SAME, batch_size=2)
    cache.get("resid_post", 0)
    assert cache.n_forward_passes == 1 and cache.n_batches_run == 2 and cache.last_stop_at_layer == 1
    cache.get("resid_post", 0)
    cache.fetch([("resid_post", 0)])
    assert cache.n_forward_passes == 1  # a hit runs nothing
    cache.fetch(["resid_post", "pattern"])  # only the missing ones, in one pass, to the last layer
    assert cache.n_forward_passes == 2 and cache.last_stop_at_layer == 2
    assert cache.stack("resid_post").shape == (2, 4, 6, 32)
    cache.get("ln_final")
    assert cache.last_stop_at_layer is None


def test_flagged_hooks_are_enabled_then_restored(tiny_model):
    cache = SharedCache(tiny_model, SAME)
    result = cache["result", 1]  # needs use_attn_result
    assert not tiny_model.cfg.use_attn_result
    torch.testing.assert_close(result.sum(2) + tiny_model.blocks[1].attn.b_O, cache["attn_out", 1], atol=1e-5, rtol=1e-5)
    assert not tiny_model.hook_dict["blocks.1.attn.hook_result"].fwd_hooks


def test_to_tl_cache_supports_tl_methods(tiny_model):
    cache = SharedCache(tiny_model, SAME)
    tl_cache = cache.to_tl_cache(["resid_post"])
    assert torch.equal(tl_cache["resid_post", 1], cache["resid_post", 1])


def test_bad_input(tiny_model):
    with pytest.raises(EmptyInputError):
        SharedCache(tiny_model, [])
    with pytest.raises(EmptyInputError):
        SharedCache(tiny_model, ["w1", "  "])
    with pytest.raises(PromptTooLongError, match="n_ctx=16"):
        SharedCache(tiny_model, [" ".join(["w1"] * 20)])
    cache = SharedCache(tiny_model, SAME)
    with pytest.raises(UnknownSiteError, match="resid_post"):
        cache.get("resid_pots", 0)
    with pytest.raises(UnknownSiteError, match="layers 0..1"):
        cache.get("resid_post", 5)
    with pytest.raises(MechinterpError, match="stack"):
        cache.get("resid_post")
    with pytest.raises(MechinterpError, match="outside prompt"):
        SharedCache(tiny_model, RAGGED, positions=[3])
    assert not any(hp.fwd_hooks for hp in tiny_model.hook_dict.values())


def test_task_input_respects_each_prompts_length():
    import mechinterp

    model = mechinterp.load("zoo:toy-lm")
    task = mechinterp.tasks.load("ioi", model, n=6, seed=0)
    assert len(set(task.lengths.tolist())) > 1  # ragged, so "last" must differ from the padded end
    cache = SharedCache(model, task, positions="last")
    _, ref = model.run_with_cache(task.clean_tokens)
    rows = torch.arange(len(task))
    torch.testing.assert_close(cache["resid_post", 3], ref["blocks.3.hook_resid_post"][rows, task.lengths - 1], atol=1e-5, rtol=1e-5)


def test_store_device_keeps_values_where_asked(tiny_model):
    """``store_device="model"`` keeps in-memory sites on the model's device, with the same values.

    (On this CPU-only machine both are the CPU; ``benchmarks/cache_device.py --device cuda``
    compares the two on a GPU.)
    """
    here = SharedCache(tiny_model, RAGGED, batch_size=2, store_device="model")
    ref = SharedCache(tiny_model, RAGGED, batch_size=2)
    assert here.store_device == torch.device(tiny_model.cfg.device)
    assert torch.equal(here["resid_post", 1], ref["resid_post", 1])
    assert here["resid_post", 1].device == torch.device(tiny_model.cfg.device)
    with pytest.raises(MechinterpError, match="store_device"):
        SharedCache(tiny_model, RAGGED, store_device="not-a-device")


def test_position_weights_reduce_per_batch(tiny_model, tmp_path):
    """``positions=`` a weight tensor stores each prompt's weighted sum over positions, ``[n, ...]``."""
    full = SharedCache(tiny_model, RAGGED, batch_size=2)
    weights = full.attention_mask.float() / full.lengths[:, None]  # the mean over each prompt
    mean = SharedCache(tiny_model, RAGGED, positions=weights, batch_size=2)
    spilled = SharedCache(tiny_model, RAGGED, positions=weights, batch_size=2, memory_budget=0, spill_dir=tmp_path)
    resid = full["resid_post", 1]
    torch.testing.assert_close(mean["resid_post", 1], resid.sum(1) / full.lengths[:, None], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(spilled["resid_post", 1], mean["resid_post", 1])
    assert mean.memory_bytes == resid.numel() * 4 // resid.shape[1]  # no position dimension stored
    mask_left = SharedCache(tiny_model, RAGGED, padding_side="left").attention_mask.float()
    left = SharedCache(tiny_model, RAGGED, positions=mask_left / full.lengths[:, None], batch_size=2, padding_side="left")
    torch.testing.assert_close(left["resid_post", 1], mean["resid_post", 1], atol=1e-4, rtol=1e-4)
    assert left["z", 0].shape == (len(RAGGED), 4, 8)  # heads kept, positions summed
    with pytest.raises(MechinterpError, match="zero at padding"):
        SharedCache(tiny_model, RAGGED, positions=torch.ones_like(weights))


def test_fetch_caches_a_site_named_twice_once(tiny_model):
    """The lens's rows and DLA's sites share the final resid_post: fetching both lists together must work."""
    from mechinterp.core.cache import SharedCache

    cache = SharedCache(tiny_model, torch.randint(3, 40, (3, 5), generator=torch.Generator().manual_seed(0)), positions="last")
    names = cache.fetch(["blocks.0.hook_resid_post", "hook_embed", "blocks.0.hook_resid_post"])
    assert names[0] == names[2] == "blocks.0.hook_resid_post"
    _, ref = tiny_model.run_with_cache(cache.inputs.tokens)
    torch.testing.assert_close(cache["blocks.0.hook_resid_post"], ref["blocks.0.hook_resid_post"][:, -1])
