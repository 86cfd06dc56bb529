"""Every probes method on good and bad input: results, MechinterpErrors, and no hooks left behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import MechinterpError
from mechinterp import probes

PROMPTS = [f"w{i % 7} w{10 + i % 5} w{20 + i % 11} w{30 + i % 3}" for i in range(24)]
LABELS = [i % 2 for i in range(24)]


def _data(model):
    return probes.collect_activations(model, PROMPTS, LABELS, progress=False)


def _metric(logits):
    return logits[:, -1, 5] - logits[:, -1, 6]


GOOD = {
    "collect_activations": lambda m: probes.collect_activations(m, PROMPTS, LABELS, position=slice(1, None), progress=False),
    "probe_sweep": lambda m: probes.probe_sweep(_data(m), cv=3, n_random=1),
    "LogisticProbe": lambda m: probes.LogisticProbe().fit(_data(m).x(1).numpy(), LABELS),
    "MassMeanProbe": lambda m: probes.MassMeanProbe().fit(_data(m).x(1).numpy(), LABELS),
    "RidgeProbe": lambda m: probes.RidgeProbe().fit(_data(m).x(1).numpy(), np.arange(24.0)),
    "causal_check": lambda m: probes.causal_check(m, None, torch.randn(32), layer=1, tokens=m.to_tokens(PROMPTS),
                                                  metric=_metric, scales=[1.0], n_random=1),
    "run_with_direction": lambda m: probes.run_with_direction(m, m.to_tokens(PROMPTS[:2]), "blocks.0.hook_resid_post", torch.randn(32)),
}
BAD = {
    "labels of the wrong length": lambda m: probes.collect_activations(m, PROMPTS, LABELS[:-1]),
    "a single class": lambda m: probes.collect_activations(m, PROMPTS, [1] * 24),
    "an unknown site": lambda m: probes.collect_activations(m, PROMPTS, LABELS, site="resid_postt"),
    "NaN activations": lambda m: probes.probe_sweep(_nan_data(m)),
    "NaN in the estimator": lambda m: probes.LogisticProbe().fit(np.full((4, 3), np.nan), [0, 1, 0, 1]),
    "an empty prompt list": lambda m: probes.collect_activations(m, [], []),
    "a prompt longer than n_ctx": lambda m: probes.collect_activations(m, [" ".join(["w1"] * 40), "w2"], [0, 1]),
    "a direction of the wrong size": lambda m: probes.run_with_direction(m, m.to_tokens(PROMPTS[:2]), "blocks.0.hook_resid_post", torch.ones(3)),
    "a zero direction": lambda m: probes.causal_check(m, None, torch.zeros(32), layer=0, tokens=m.to_tokens(PROMPTS), metric=_metric),
    "an unknown causal site": lambda m: probes.causal_check(m, None, torch.ones(32), layer=0, site="nope", tokens=m.to_tokens(PROMPTS), metric=_metric),
}


def _nan_data(model):
    data = _data(model)
    data.features[0] = data.features[0].clone()
    data.features[0][3, 0, 2] = float("nan")
    return data


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_input(tiny_model, name):
    assert GOOD[name](tiny_model) is not None
    assert_no_hooks(tiny_model)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_raises_mechinterp_error(tiny_model, name):
    with pytest.raises(MechinterpError) as info:
        BAD[name](tiny_model)
    assert len(str(info.value)) > 20  # a message that says what to do
    assert_no_hooks(tiny_model)
