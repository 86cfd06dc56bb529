"""Readout: which positions a metric reads, found and verified, never trusted blindly."""

from __future__ import annotations

import torch

from mechinterp.patching.readout import find_readout, local_values


def _logits(batch=3, n_pos=6, vocab=11, seed=0):
    return torch.randn(batch, n_pos, vocab, generator=torch.Generator().manual_seed(seed))


def test_last_position_metric():
    logits = _logits()
    readout = find_readout(lambda x: x[:, -1, 2] - x[:, -1, 3], logits)
    assert readout is not None and readout.first == 5
    assert readout.positions.tolist() == [[5], [5], [5]]


def test_other_positions_are_found_by_the_gradient():
    logits = _logits()
    readout = find_readout(lambda x: x[:, 2, 0] + x[:, -1, 1], logits)
    assert readout is not None and readout.first == 2
    assert readout.positions.tolist() == [[2, 5]] * 3
    # Per-prompt positions (e.g. the last real token of padded prompts).
    last = torch.tensor([5, 3, 4])
    readout = find_readout(lambda x: x[torch.arange(3), last, 0], logits)
    assert readout is not None and readout.first == 3
    assert [sorted(set(r)) for r in readout.positions.tolist()] == [[5], [3, 5], [4, 5]]


def test_declared_positions_are_used_and_verified():
    logits = _logits()

    def metric(x):
        return x[:, 1].sum(-1) * 0 + x[:, 1, 0]  # reads position 1 (the gradient says so too)

    metric.positions = 1
    assert find_readout(metric, logits).positions.tolist() == [[1, 5]] * 3

    def liar(x):
        return x[:, 2, 0]

    liar.positions = -1  # claims the last position, reads position 2: verification refuses it
    assert find_readout(liar, logits) is None


def test_metrics_that_read_everything_or_have_no_gradient_get_full_logits():
    logits = _logits()
    assert find_readout(lambda x: x.mean((1, 2)), logits) is None
    # No gradient (argmax) at position 2: only the last position is a candidate, and the
    # NaN / random-value checks see that position 2 is read.
    assert find_readout(lambda x: x[:, 2].argmax(-1).float() + x[:, -1, 0], logits) is None
    assert find_readout(lambda x: x[:, -1].argmax(-1).float(), logits) is not None
    # A metric that raises, returns a non-tensor, or is not finite: full logits (its own errors surface there).
    assert find_readout(lambda x: 1 / 0, logits) is None
    assert find_readout(lambda x: [0.0, 0.0, 0.0], logits) is None
    assert find_readout(lambda x: x[:, -1, 0] / 0, logits) is None


def test_local_values_fill_nan_elsewhere():
    logits = _logits(batch=2, n_pos=4)
    readout = find_readout(lambda x: x[:, -1, 0], logits)
    local = torch.stack([logits[:, -1:], logits[:, -1:] + 1]).reshape(4, 1, -1)  # two variants
    seen = []

    def metric(x):
        seen.append(x)
        return x[:, -1, 0]

    values = local_values(metric, local, readout, 4, lambda v, b: v)
    torch.testing.assert_close(values, torch.stack([logits[:, -1, 0], logits[:, -1, 0] + 1]))
    assert seen[0].shape == (2, 4, logits.shape[-1]) and torch.isnan(seen[0][:, :3]).all()
