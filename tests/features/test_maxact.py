"""Max-activating dataset examples: tracr's frac_prevs / is_x dimensions (known by construction), streaming."""

from __future__ import annotations

import random

import pytest
import torch

import mechinterp
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import MechinterpError
from mechinterp.features import MaxActivations, dimension, head_norm, max_activating_examples, neuron


@pytest.fixture(scope="module")
def tracr():
    return mechinterp.load("zoo:tracr-frac-prevs")


@pytest.fixture(scope="module")
def sequences():
    rng = random.Random(0)
    return [" ".join(rng.choice("wxyz") for _ in range(rng.randint(2, 5))) for _ in range(120)]


def test_frac_prevs_dimension_top_examples_are_all_x_prefixes(tracr, sequences):
    """resid_post 1, dimension 0 is tracr's `frac_prevs` (fraction of tokens so far equal to "x");
    its maximum, 1, is reached exactly where every token up to the position is "x"."""
    top = max_activating_examples(tracr, sequences, dimension(tracr, "resid_post", 1, 0), k=10, batch_size=7)
    assert len(top) == 10
    for value, toks in zip(top.values, top.tokens):
        assert float(value) == pytest.approx(1.0, abs=1e-4)
        assert set(toks[1:]) == {"x"}  # after BOS: all "x"
    assert top.n_tokens == sum(len(s.split()) for s in sequences)  # BOS skipped
    assert_no_hooks(tracr)


def test_is_x_dimension_top_examples_end_in_x_and_bottom_ones_do_not(tracr, sequences):
    """resid_post 0, dimension 6 is tracr's `is_x` (MLP0 writes 1 where the token is "x")."""
    target = dimension(tracr, "resid_post", 0, 6)
    top = max_activating_examples(tracr, sequences, target, k=15)
    bottom = max_activating_examples(tracr, sequences, target, k=15, minimise=True)
    assert all(t[-1] == "x" for t in top.tokens) and all(t[-1] != "x" for t in bottom.tokens)
    assert torch.all(top.values > 0.99) and torch.all(bottom.values.abs() < 0.01)


def test_streaming_matches_brute_force_and_shared_cache(toy_lm):
    prompts = mechinterp.tasks.load("sentiment", toy_lm, n=24).clean_prompts
    target = neuron(toy_lm, layer=2, index=11)
    streamed = max_activating_examples(toy_lm, prompts, target, k=6, batch_size=5)
    cache = mechinterp.SharedCache(toy_lm, prompts, positions="all")
    cached = max_activating_examples(toy_lm, cache, target, k=6)
    torch.testing.assert_close(streamed.values, cached.values)
    batch = mechinterp.tokenize(toy_lm, prompts)
    _, full = toy_lm.run_with_cache(batch.tokens)
    acts = full["blocks.2.mlp.hook_post"][..., 11]
    acts = torch.where(batch.attention_mask.bool(), acts, torch.tensor(-float("inf")))
    acts[:, 0] = -float("inf")  # BOS
    torch.testing.assert_close(streamed.values, acts.flatten().topk(6).values)
    i, p = int(streamed.prompt_index[0]), int(streamed.position[0])
    torch.testing.assert_close(torch.tensor(streamed.activations[0][-1]), acts[i, p])
    assert len(streamed.tokens[0]) == p + 1 == len(streamed.activations[0])


def test_head_norm_is_the_norm_of_z_times_w_o(toy_lm):
    prompts = ["The capital of France is", "Review : the food was great . Sentiment :"]
    top = max_activating_examples(toy_lm, prompts, head_norm(toy_lm, 1, 2), k=1)
    _, full = toy_lm.run_with_cache(prompts[int(top.prompt_index[0])])
    out = (full["blocks.1.attn.hook_z"][0, :, 2] @ toy_lm.blocks[1].attn.W_O[2]).norm(dim=-1).detach()
    assert float(top.values[0]) == pytest.approx(float(out[1:].max()), rel=1e-4)


def test_round_trip_render_and_bad_input(toy_lm, tracr, tmp_path):
    top = max_activating_examples(tracr, ["x x w", "w x"], dimension(tracr, "resid_post", 1, 0), k=2)
    back = MaxActivations.load(top.save(tmp_path / "top.json"))
    assert back.tokens == top.tokens and torch.equal(back.values, top.values)
    assert "Max-activating" in top.to_html() and "background" in top.to_html()
    top.plot()
    with pytest.raises(MechinterpError, match="k must be"):
        max_activating_examples(tracr, ["x"], dimension(tracr, "resid_post", 1, 0), k=0)
    with pytest.raises(MechinterpError, match="out of range"):
        neuron(toy_lm, 0, 10_000)
    with pytest.raises(MechinterpError, match="no MLPs"):
        neuron(mechinterp.load("zoo:attn-only-2l"), 0, 1)
    with pytest.raises(MechinterpError, match="positions='all'"):
        max_activating_examples(tracr, mechinterp.SharedCache(tracr, ["x w"], positions="last"), dimension(tracr, "resid_post", 1, 0))
    assert_no_hooks(tracr)
