"""Steering: the toy-lm sentiment flip (and its random control), exact hook arithmetic, hook hygiene."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import MechinterpError
from mechinterp.lens import SteeringSweep, SteeringVector, contrastive_vector, steered_generate, steering_hooks, steering_intervention, steering_sweep


def test_contrastive_vector_flips_held_out_sentiment_and_random_does_not(toy_lm, sentiment_split):
    pos, neg, test = sentiment_split
    vectors = {l: contrastive_vector(toy_lm, pos, neg, l) for l in range(toy_lm.cfg.n_layers)}
    held_out_negative = [p for p, a in zip(test.clean_prompts, test.correct_answers) if a == "negative"]
    sweep = steering_sweep(toy_lm, held_out_negative, vectors, [0.5, 1.0, 2.0], target="positive", other="negative")
    assert sweep.baseline_success == 0.0  # the model reads every held-out negative review as negative
    layer, scale, success = sweep.best()
    assert success >= 0.8
    i, j = sweep.layers.index(layer), sweep.scales.index(scale)
    assert float(sweep.random_success[i, j]) <= 0.2  # a random vector of the same norm does not flip them
    assert_no_hooks(toy_lm)


def test_contrastive_vector_is_the_mean_difference(toy_lm):
    pos = ["Review : the food was great . Sentiment :", "Review : the room was clean . Sentiment :"]
    neg = ["Review : the food was terrible . Sentiment :"]
    v = contrastive_vector(toy_lm, pos, neg, layer=2)
    _, cp = toy_lm.run_with_cache(pos)
    _, cn = toy_lm.run_with_cache(neg)
    expect = cp["blocks.2.hook_resid_post"][:, -1].mean(0) - cn["blocks.2.hook_resid_post"][:, -1].mean(0)
    torch.testing.assert_close(v.vector, expect, atol=1e-5, rtol=1e-5)
    assert v.hook == "blocks.2.hook_resid_post" and (v.n_positive, v.n_negative) == (2, 1)


def test_hook_adds_exactly_at_the_chosen_positions(toy_lm):
    tokens = toy_lm.to_tokens("Review : the food was terrible . Sentiment :")
    v = SteeringVector(torch.randn(toy_lm.cfg.d_model), "blocks.1.hook_resid_post", "test")
    _, clean = toy_lm.run_with_cache(tokens, names_filter="blocks.1.hook_resid_post")
    seen = {}

    def grab(act, hook):
        seen["x"] = act.clone()

    with steering_hooks(toy_lm, v, scale=2.0, positions=[3]):
        toy_lm.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_resid_post", grab)])
    delta = seen["x"] - clean["blocks.1.hook_resid_post"]
    torch.testing.assert_close(delta[0, 3], 2.0 * v.vector, atol=1e-5, rtol=1e-5)
    assert torch.all(delta[0, :3] == 0) and torch.all(delta[0, 4:] == 0)
    with steering_hooks(toy_lm, v, scale=0.0):
        torch.testing.assert_close(toy_lm(tokens), toy_lm(tokens))
    assert_no_hooks(toy_lm)


def test_per_prompt_scales_and_positions(toy_lm):
    """Per-prompt scales ([batch]) at each prompt's own position ([batch] indices): a hand-written hook's numbers."""
    from mechinterp.core.intervention import Intervention

    tokens = toy_lm.to_tokens(["Review : the food was terrible . Sentiment :", "Review : the room was dirty . Sentiment :"])
    v = SteeringVector(torch.randn(toy_lm.cfg.d_model, generator=torch.Generator().manual_seed(0)), "blocks.1.hook_resid_post")
    scale, where = torch.tensor([1.5, -2.0]), torch.tensor([2, 5])

    def by_hand(x, hook):
        x = x.clone()
        for b in range(2):
            x[b, where[b]] += scale[b] * v.vector
        return x

    with torch.no_grad():
        expect = toy_lm.run_with_hooks(tokens, fwd_hooks=[(v.hook, by_hand)])
        with steering_hooks(toy_lm, v, scale=scale, positions=where):
            got = toy_lm(tokens)
    torch.testing.assert_close(got, expect)
    assert isinstance(steering_intervention(v, 2.0), Intervention)
    assert_no_hooks(toy_lm)


def test_hooks_removed_on_error_and_bad_input(toy_lm, tiny_model):
    v = SteeringVector(torch.ones(toy_lm.cfg.d_model), "blocks.0.hook_resid_post")
    with pytest.raises(RuntimeError, match="boom"):
        with steering_hooks(toy_lm, v):
            raise RuntimeError("boom")
    assert_no_hooks(toy_lm)
    with pytest.raises(MechinterpError, match="d_model"):
        with steering_hooks(tiny_model, SteeringVector(torch.ones(toy_lm.cfg.d_model), "blocks.0.hook_resid_post")):
            pass
    with pytest.raises(MechinterpError, match="finite"):
        with steering_hooks(toy_lm, v, scale=float("nan")):
            pass
    with pytest.raises(MechinterpError, match="one finite"):
        SteeringVector(torch.ones(2, 3), "blocks.0.hook_resid_post")
    with pytest.raises(MechinterpError, match="at least one"):
        steering_sweep(toy_lm, ["a"], {}, [1.0], target="positive", other="negative")
    assert_no_hooks(toy_lm)


def test_generation_and_round_trip(toy_lm, tmp_path):
    v = contrastive_vector(toy_lm, ["Review : the food was great . Sentiment :"], ["Review : the food was terrible . Sentiment :"], 3)
    text = steered_generate(toy_lm, "Review : the food was terrible . Sentiment :", v, scale=3.0, max_new_tokens=1)
    assert text.split()[-1] == "positive"
    assert_no_hooks(toy_lm)
    back = SteeringVector.load(v.save(tmp_path / "v.json"))
    torch.testing.assert_close(back.vector, v.vector)
    sweep = steering_sweep(toy_lm, ["Review : the food was terrible . Sentiment :"], {3: v}, [1.0], target="positive", other="negative")
    again = SteeringSweep.load(sweep.save(tmp_path / "s.json"))
    assert again.best() == sweep.best() and "Steering sweep" in sweep.to_html()
    sweep.plot()
