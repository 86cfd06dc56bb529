"""Per-example and per-token gradients against plain autograd on one sequence at a time."""

from __future__ import annotations

import torch

from mechinterp.influence import as_training_set, per_example_grads, per_token_grads, select_params


def test_per_token_rows_are_each_next_token_loss_gradient(tiny_model):
    ts = as_training_set(tiny_model, ["w1 w2 w3 w4 w5", "w9 w8"])
    names = select_params(tiny_model)
    whole = per_example_grads(tiny_model, names, ts.tokens, ts.loss_mask)
    length = int(ts.lengths[0])
    rows = per_token_grads(tiny_model, names, ts.tokens[0], length)
    toks = ts.tokens[0, :length]
    own = dict(tiny_model.named_parameters())
    for t in (0, length - 2):  # first and last prediction: autograd on that one loss
        logits = tiny_model(toks[None])[0]
        loss = -logits[t].log_softmax(-1)[toks[t + 1]]
        ref = torch.autograd.grad(loss, [own[n] for n in names])
        for n, g in zip(names, ref):
            torch.testing.assert_close(rows[n][t], g, rtol=1e-4, atol=1e-6)
    for n in names:
        assert rows[n].shape == (length - 1, *own[n].shape)
        torch.testing.assert_close(rows[n].sum(0), whole[n][0], rtol=1e-4, atol=1e-6)
