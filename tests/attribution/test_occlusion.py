"""Occlusion / leave-one-out against captum's FeatureAblation and Occlusion on token ids."""

from __future__ import annotations

import numpy as np
import torch

from mechinterp.attribution import attribute

PROMPT = "w5 w1 w7 w3 w2 w8"


def _setup(model):
    tokens = model.to_tokens(PROMPT)
    target = int(model.to_single_token("w6"))
    pad = model.tokenizer.pad_token_id
    return tokens, target, pad, (lambda toks: model(toks)[:, -1, target])


def test_leave_one_out_equals_captum_feature_ablation(tiny_model):
    from captum.attr import FeatureAblation

    tokens, _, pad, forward = _setup(tiny_model)
    mask = torch.arange(tokens.shape[1]).unsqueeze(0)
    ref = FeatureAblation(forward).attribute(tokens, baselines=pad, feature_mask=mask)
    ours = attribute(tiny_model, PROMPT, "w6", method="occlusion", replacement="pad", warn=False)
    np.testing.assert_allclose(ours.scores[0, 1:].numpy(), ref[0, 1:].detach().float().numpy(), atol=1e-5)


def test_sliding_window_equals_captum_occlusion(tiny_model):
    from captum.attr import Occlusion

    tokens, _, pad, forward = _setup(tiny_model)
    content = tokens[:, 1:]

    def forward_content(toks):
        return forward(torch.cat([tokens[:, :1].expand(toks.shape[0], -1), toks.long()], dim=1))

    ref = Occlusion(forward_content).attribute(content, sliding_window_shapes=(2,), strides=1, baselines=pad)
    ours = attribute(tiny_model, PROMPT, "w6", method="occlusion", window=2, replacement="pad", warn=False)
    np.testing.assert_allclose(ours.scores[0, 1:].numpy(), ref[0].detach().float().numpy(), atol=1e-5)


def test_span_occlusion(tiny_model):
    res = attribute(tiny_model, PROMPT, "w6", method="occlusion", features={"a": (1, 4), "b": [4, 5, 6]}, warn=False)
    assert res.tokens == ["a", "b"] and res.metadata["groups"] == [[1, 2, 3], [4, 5, 6]]


def test_mean_embedding_replacement_is_the_default_and_replaces_embeddings(tiny_model):
    """Leave-one-out with dropped positions' token embeddings set to the mean token embedding, by hand."""
    from mechinterp.attribution import Contrast

    tokens = tiny_model.to_tokens(PROMPT)
    mean = tiny_model.W_E.detach().mean(0)
    target = Contrast("w6", "w4")
    a, b = int(tiny_model.to_single_token("w6")), int(tiny_model.to_single_token("w4"))

    def value(drop):
        def embed_hook(act, hook):
            act = act.clone()
            if drop is not None:
                act[:, drop] = mean
            return act

        logits = tiny_model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", embed_hook)])[0, -1]
        return float(logits[a] - logits[b])

    full = value(None)
    expected = [full - value(i) for i in range(1, tokens.shape[1])]
    res = attribute(tiny_model, PROMPT, target, method="occlusion", warn=False)
    assert res.options["replacement"] == "auto"  # no declared absence token: the mean embedding
    np.testing.assert_allclose(res.scores[0, 1:].numpy(), expected, atol=1e-5)
    pad = attribute(tiny_model, PROMPT, target, method="occlusion", replacement="pad", warn=False)
    assert not torch.allclose(pad.scores, res.scores)
