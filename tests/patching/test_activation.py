"""Activation patching equals TransformerLens's ``patching`` functions and the naive loop."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import patching as tlp

from mechinterp.core.ablation import resample_permutation
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import MechinterpError
from mechinterp.patching import activation_patch, patch_block_every, patch_heads_by_pos_every, patch_heads_every

CASES = [
    ("resid_pre", "position", "get_act_patch_resid_pre"),
    ("resid_mid", "position", "get_act_patch_resid_mid"),
    ("attn_out", "position", "get_act_patch_attn_out"),
    ("mlp_out", "position", "get_act_patch_mlp_out"),
    ("z", "head_position", "get_act_patch_attn_head_out_by_pos"),
    ("q", "head_position", "get_act_patch_attn_head_q_by_pos"),
    ("k", "head_position", "get_act_patch_attn_head_k_by_pos"),
    ("v", "head_position", "get_act_patch_attn_head_v_by_pos"),
    ("pattern", "head_position", "get_act_patch_attn_head_pattern_by_pos"),
    ("pattern", "dest_src", "get_act_patch_attn_head_pattern_dest_src_pos"),
    ("z", "head", "get_act_patch_attn_head_out_all_pos"),
    ("q", "head", "get_act_patch_attn_head_q_all_pos"),
    ("pattern", "head", "get_act_patch_attn_head_pattern_all_pos"),
]


@pytest.fixture(scope="module")
def tl_setup(tiny_model, short_pair, short_metric):
    clean, corrupted, _, _ = short_pair
    _, cache = tiny_model.run_with_cache(clean)
    return cache, (lambda logits: short_metric(logits).mean())


@pytest.mark.parametrize("site,by,tl_name", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_equals_transformer_lens(tiny_model, short_pair, short_metric, tl_setup, site, by, tl_name):
    clean, corrupted, _, _ = short_pair
    metric = short_metric
    cache, tl_metric = tl_setup
    expected = getattr(tlp, tl_name)(tiny_model, corrupted, cache, tl_metric)
    # chunk_size=3 mixes chunks with different start layers and reused prefixes.
    for chunk in (None, 3):
        ours = activation_patch(tiny_model, clean, corrupted, metric, site=site, by=by, normalise=False, chunk_size=chunk)
        assert ours.raw.shape == expected.shape
        torch.testing.assert_close(ours.raw, expected, atol=1e-5, rtol=0)
    assert_no_hooks(tiny_model)


@pytest.mark.parametrize(
    "fn,tl_fn",
    [
        (patch_block_every, tlp.get_act_patch_block_every),
        (patch_heads_every, tlp.get_act_patch_attn_head_all_pos_every),
        (patch_heads_by_pos_every, tlp.get_act_patch_attn_head_by_pos_every),
    ],
)
def test_every_equals_transformer_lens(tiny_model, short_pair, short_metric, tl_setup, fn, tl_fn):
    clean, corrupted, _, _ = short_pair
    metric = short_metric
    cache, tl_metric = tl_setup
    expected = tl_fn(tiny_model, corrupted, cache, tl_metric)
    ours = fn(tiny_model, clean, corrupted, metric, normalise=False)
    torch.testing.assert_close(ours.raw, expected, atol=1e-5, rtol=0)
    assert ours.dims[0] == "site" and len(ours.labels["site"]) == expected.shape[0]


def test_every_restricted_to_layers_and_heads_is_the_full_sweeps_slice(tiny_model, short_pair, short_metric):
    clean, corrupted, _, _ = short_pair
    full = patch_heads_every(tiny_model, clean, corrupted, short_metric, normalise=False)
    part = patch_heads_every(tiny_model, clean, corrupted, short_metric, normalise=False, layers=[1], heads=[0, 2])
    assert part.raw.shape == (5, 1, 2) and part.labels["layer"] == ["L1"] and part.labels["head"] == ["H0", "H2"]
    torch.testing.assert_close(part.raw, full.raw[:, 1:2][:, :, [0, 2]], atol=1e-6, rtol=0)
    block = patch_block_every(tiny_model, clean, corrupted, short_metric, normalise=False, layers=[0], positions=[1])
    torch.testing.assert_close(block.raw, patch_block_every(tiny_model, clean, corrupted, short_metric, normalise=False).raw[:, :1, 1:2])


@pytest.mark.parametrize("site,by", [("resid_post", "position"), ("result", "head_position"), ("z", "position"), ("pattern", ("layer", "dest_pos"))])
def test_batched_equals_naive_loop(tiny_model, pair, metric, site, by):
    clean, corrupted, _, _ = pair
    naive = activation_patch(tiny_model, clean, corrupted, metric, site=site, by=by, strategy="naive")
    for chunk in (None, 1, 5):
        fast = activation_patch(tiny_model, clean, corrupted, metric, site=site, by=by, chunk_size=chunk)
        torch.testing.assert_close(fast.raw, naive.raw, atol=1e-5, rtol=0)
    assert not tiny_model.cfg.use_attn_result, "the use_attn_result flag must be restored"


def test_whole_layer_restores_clean_and_nothing_is_corrupted(tiny_model, pair, metric):
    clean, corrupted, _, _ = pair
    result = activation_patch(tiny_model, clean, corrupted, metric, site="resid_pre", by="layer")
    # Raw units: on this random model the clean-corrupted gap is ~1e-3, so normalised values
    # would magnify fp32 round-off (the batched runs compute fewer positions) ~1000x.
    torch.testing.assert_close(result.raw, torch.full((2,), result.target_value), atol=1e-5, rtol=0)
    exact = activation_patch(tiny_model, clean, corrupted, metric, site="resid_pre", by="layer", readout="full")
    torch.testing.assert_close(exact.values, torch.ones(2), atol=1e-5, rtol=0)
    clean_m, corrupted_m = metric(tiny_model(clean)).mean(), metric(tiny_model(corrupted)).mean()
    assert result.target_value == pytest.approx(float(clean_m.detach()), abs=1e-5)
    assert result.base_value == pytest.approx(float(corrupted_m.detach()), abs=1e-5)
    # Patching at an unchanged position (0 is identical in clean and corrupted) does nothing.
    by_pos = activation_patch(tiny_model, clean, corrupted, metric, site="resid_pre", by="position")
    torch.testing.assert_close(by_pos.raw[:, 0], torch.full((2,), by_pos.base_value), atol=1e-5, rtol=0)


def test_noising_is_the_mirror_of_denoising(tiny_model, pair, metric):
    clean, corrupted, _, _ = pair
    noising = activation_patch(tiny_model, clean, corrupted, metric, site="resid_pre", by="layer", direction="noising")
    torch.testing.assert_close(noising.raw, torch.full((2,), noising.target_value), atol=1e-5, rtol=0)  # raw: see above
    swapped = activation_patch(tiny_model, corrupted, clean, metric, site="attn_out", by="position", normalise=False)
    noised = activation_patch(tiny_model, clean, corrupted, metric, site="attn_out", by="position", direction="noising", normalise=False)
    torch.testing.assert_close(noised.raw, swapped.raw, atol=1e-6, rtol=0)


def _hand_ablation(model, tokens, metric, hook_name, pos, value_fn):
    def hook(act, hook):
        act = act.clone()
        act[:, pos] = value_fn(act)[:, pos]
        return act

    return float(metric(model.run_with_hooks(tokens, fwd_hooks=[(hook_name, hook)])).mean())


def test_zero_mean_resample_ablations_by_hand(tiny_model, pair, metric):
    clean, corrupted, _, _ = pair
    hook = "blocks.1.hook_attn_out"
    zero = activation_patch(tiny_model, clean, None, metric, site="attn_out", by="position", ablation="zero")
    assert not zero.normalised and zero.direction == "ablation"
    assert float(zero.raw[1, 7]) == pytest.approx(_hand_ablation(tiny_model, clean, metric, hook, 7, torch.zeros_like), abs=1e-5)
    _, cache = tiny_model.run_with_cache(corrupted)
    ref = cache[hook]
    mean = activation_patch(tiny_model, clean, corrupted, metric, site="attn_out", by="position", ablation="mean", normalise=False)
    expect = _hand_ablation(tiny_model, clean, metric, hook, 4, lambda a: ref.mean(0, keepdim=True).expand_as(a))
    assert float(mean.raw[1, 4]) == pytest.approx(expect, abs=1e-5)
    perm = resample_permutation(3, seed=5)  # a derangement: every prompt takes another's activation
    res = activation_patch(tiny_model, clean, corrupted, metric, site="attn_out", by="position", ablation="resample", seed=5, normalise=False)
    assert float(res.raw[1, 3]) == pytest.approx(_hand_ablation(tiny_model, clean, metric, hook, 3, lambda a: ref[perm]), abs=1e-5)


def test_subsets_and_labels(tiny_model, pair, metric):
    clean, corrupted, _, _ = pair
    full = activation_patch(tiny_model, clean, corrupted, metric, site="z", by="head_position")
    part = activation_patch(tiny_model, clean, corrupted, metric, site="z", by="head_position", layers=[1], positions=[2, 9], heads=[0, 3])
    torch.testing.assert_close(part.values, full.values[1:2][:, [2, 9]][:, :, [0, 3]], atol=1e-5, rtol=0)
    assert part.labels["layer"] == ["L1"] and part.labels["head"] == ["H0", "H3"]
    assert part.labels["pos"][0].startswith("2:")


def test_text_prompts_and_named_metrics(tiny_model):
    clean = ["w1 w2 w3 w4 w5", "w6 w7 w8 w9 w10"]
    corrupted = ["w1 w2 w30 w4 w5", "w6 w7 w31 w9 w10"]
    result = activation_patch(tiny_model, clean, corrupted, "logit_diff", answers=(["w11", "w12"], ["w13", "w14"]), site="resid_pre", by="layer")
    torch.testing.assert_close(result.values, torch.ones(2), atol=1e-5, rtol=0)
    tokens = tiny_model.to_tokens(clean)
    for name in ("logprob", "prob", "kl"):
        r = activation_patch(tiny_model, clean, corrupted, name, answers=["w11", "w12"], site="resid_pre", by="position")
        assert r.values.shape == (2, tokens.shape[1])
        torch.testing.assert_close(r.values[:, 0], torch.zeros(2), atol=1e-5, rtol=0)


def test_kl_metric_is_zero_on_clean(tiny_model):
    clean, corrupted = ["w1 w2 w3 w4"], ["w1 w9 w3 w4"]
    r = activation_patch(tiny_model, clean, corrupted, "kl", site="resid_pre", by="layer", normalise=False)
    assert r.target_value == pytest.approx(0.0, abs=1e-6)
    assert r.base_value < 0


# --- issue 16: bad sizes, mean ablation over padding, resample with one prompt -----------------


@pytest.mark.parametrize("bad", [-1, 0, 1.5, "3", True])
def test_bad_chunk_size_raises(tiny_model, pair, metric, bad):
    from mechinterp.errors import MechinterpError

    clean, corrupted, _, _ = pair
    with pytest.raises(MechinterpError, match="chunk_size"):
        activation_patch(tiny_model, clean, corrupted, metric, site="resid_pre", by="layer", chunk_size=bad)
    with pytest.raises(MechinterpError, match="chunk_size"):
        patch_block_every(tiny_model, clean, corrupted, metric, chunk_size=bad)
    assert_no_hooks(tiny_model)


@pytest.mark.parametrize("bad", [0, -5, float("nan"), [1], True])
def test_bad_memory_budget_raises(tiny_model, pair, metric, bad):
    from mechinterp.errors import MechinterpError

    clean, corrupted, _, _ = pair
    with pytest.raises(MechinterpError, match="memory_budget"):
        activation_patch(tiny_model, clean, corrupted, metric, site="resid_pre", by="layer", memory_budget=bad)


def _padded(tokens, lengths, pad_id=0):
    from mechinterp.core.tokens import Tokenized

    tokens = tokens.clone()
    mask = (torch.arange(tokens.shape[1]) < lengths[:, None]).long()
    tokens[mask == 0] = pad_id
    return Tokenized(tokens, mask, lengths)


@pytest.mark.parametrize("site,hook", [("attn_out", "blocks.1.hook_attn_out"), ("z", "blocks.0.attn.hook_z")])
def test_mean_ablation_ignores_padding(tiny_model, pair, site, hook):
    clean, _, correct, wrong = pair
    lengths = torch.tensor([10, 7, 5])
    prompts = _padded(clean, lengths)
    last = lengths - 1

    def metric(logits):
        rows = torch.arange(logits.shape[0])
        return logits[rows, last, correct] - logits[rows, last, wrong]

    _, cache = tiny_model.run_with_cache(prompts.tokens)
    acts = cache[hook]
    real = (torch.arange(10) < lengths[:, None]).float().reshape(3, 10, *[1] * (acts.ndim - 2))
    by_hand_mean = (acts * real).sum(0, keepdim=True) / real.sum(0, keepdim=True)
    layer = int(hook.split(".")[1])
    raw = activation_patch(tiny_model, prompts, None, metric, site=site, by="position", ablation="mean", normalise=False).raw
    for pos in (3, 6, 8):  # all real; prompts 0 and 1 real; only prompt 0 real
        expect = _hand_ablation(tiny_model, prompts.tokens, metric, hook, pos, lambda a: by_hand_mean.expand_as(a))
        assert float(raw[layer, pos]) == pytest.approx(expect, abs=1e-5), pos


def test_resample_with_one_prompt_raises(tiny_model, pair, metric):
    from mechinterp.errors import MechinterpError

    clean, corrupted, correct, wrong = pair

    def one(logits):
        return logits[:, -1, correct[0]] - logits[:, -1, wrong[0]]

    with pytest.raises(MechinterpError, match="[Rr]esample ablation needs at least 2 prompts"):
        activation_patch(tiny_model, clean[:1], None, one, site="attn_out", by="layer", ablation="resample")
    with pytest.raises(MechinterpError, match="[Rr]esample ablation needs at least 2 prompts"):
        patch_block_every(tiny_model, clean[:1], corrupted[:1], one, ablation="resample")
    assert_no_hooks(tiny_model)


def test_method_is_the_deprecated_name_of_strategy(tiny_model, pair, metric):
    """``strategy=`` names batched vs naive; ``method=`` still works for one release, with a DeprecationWarning."""
    import warnings

    clean, corrupted, _, _ = pair
    new = activation_patch(tiny_model, clean, corrupted, metric, site="resid_pre", by="layer", strategy="naive")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = activation_patch(tiny_model, clean, corrupted, metric, site="resid_pre", by="layer", method="naive")
    assert any(issubclass(w.category, DeprecationWarning) and "strategy='naive'" in str(w.message) for w in caught)
    torch.testing.assert_close(old.values, new.values)
    assert old.method == new.method == "naive"
    with pytest.raises(MechinterpError, match="strategy"):
        activation_patch(tiny_model, clean, corrupted, metric, strategy="fast")
