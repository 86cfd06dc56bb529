"""Saliency and gradient × input against captum on the embedding layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechinterp.attribution import attribute
from mechinterp.errors import MechinterpError

PROMPT = "w3 w1 w4 w1 w5"


def _forward(model, target):
    return lambda toks: model(toks)[:, -1, target]


def test_gradient_x_input_equals_captum(tiny_model):
    from captum.attr import LayerGradientXActivation

    tokens = tiny_model.to_tokens(PROMPT)
    target = int(tiny_model.to_single_token("w9"))
    ref = LayerGradientXActivation(_forward(tiny_model, target), tiny_model.embed).attribute(tokens)
    ours = attribute(tiny_model, PROMPT, "w9", method="gradient_x_input", warn=False)
    np.testing.assert_allclose(ours.scores[0].numpy(), ref.sum(-1)[0].detach().numpy(), atol=1e-5)


def test_saliency_is_the_gradient_norm(tiny_model):
    from captum.attr import Saliency

    tokens = tiny_model.to_tokens(PROMPT)
    target = int(tiny_model.to_single_token("w9"))
    embed = tiny_model.embed(tokens).detach()

    def from_embed(e):
        return _run(tiny_model, tokens, e)[:, -1, target]

    grads = Saliency(from_embed).attribute(embed, abs=False)
    ours = attribute(tiny_model, PROMPT, "w9", method="saliency", warn=False)
    np.testing.assert_allclose(ours.scores[0].numpy(), grads[0].norm(dim=-1).detach().numpy(), rtol=1e-5, atol=1e-6)
    l1 = attribute(tiny_model, PROMPT, "w9", method="saliency", p=1, warn=False)
    np.testing.assert_allclose(l1.scores[0].numpy(), grads[0].abs().sum(-1).detach().numpy(), rtol=1e-5, atol=1e-6)


def _run(model, tokens, embed):
    with model.hooks(fwd_hooks=[("hook_embed", lambda v, hook: embed)]):
        return model(tokens.expand(embed.shape[0], -1))


def test_multi_target_gradients_match_single_targets(tiny_model):
    from mechinterp.attribution import Continuation, NextToken

    both = attribute(tiny_model, PROMPT, Continuation("w2 w6"), method="gradient_x_input", warn=False)
    first = attribute(tiny_model, PROMPT, NextToken("w2", kind="logprob"), method="gradient_x_input", warn=False)
    torch.testing.assert_close(both.scores[0], first.scores[0], atol=1e-5, rtol=1e-5)
    assert both.scores.shape == (2, len(first.tokens))


@pytest.mark.parametrize("p", [0, -1, float("nan"), float("-inf")])
def test_saliency_rejects_a_non_positive_or_nan_norm_order(tiny_model, p):
    """Issue 16 item 8: ``p=0`` counted non-zero entries (a constant score)."""
    with pytest.raises(MechinterpError, match=r"\bp\b"):
        attribute(tiny_model, PROMPT, "w9", method="saliency", p=p, warn=False)


def test_saliency_accepts_the_max_norm(tiny_model):
    res = attribute(tiny_model, PROMPT, "w9", method="saliency", p=float("inf"), warn=False)
    assert torch.isfinite(res.scores).all() and res.scores.std() > 0
