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
    "collect_activations": lambda m: probes.collect_activations(m, PROMPTS, LABELS, positions=slice(1, None), progress=False),
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


# --- reduced precision -------------------------------------------------------------------
# A bf16 model (model.to) and an fp16 one cast with model.half() (TL's cfg.dtype left at
# float32): every entry point runs, activations are read as float32 copies, and scores are
# those of the float32 model up to the rounding of the activations.


@pytest.fixture(scope="module")
def low_models(tiny_model):
    import copy

    return {"bf16": copy.deepcopy(tiny_model).to(torch.bfloat16, print_details=False), "half()": copy.deepcopy(tiny_model).half()}


@pytest.mark.parametrize("low", ["bf16", "half()"])
@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_input_in_reduced_precision(low_models, low, name):
    model = low_models[low]
    cfg_dtype = model.cfg.dtype
    assert GOOD[name](model) is not None
    assert model.cfg.dtype == cfg_dtype
    assert_no_hooks(model)


@pytest.mark.parametrize("low", ["bf16", "half()"])
def test_reduced_precision_features_and_scores(tiny_model, low_models, low):
    model = low_models[low]
    data, ref = _data(model), _data(tiny_model)
    assert data.features[0].dtype == next(model.parameters()).dtype  # stored as computed (half the memory)
    assert data.x(1).dtype == torch.float32
    torch.testing.assert_close(data.x(1), ref.x(1), atol=0.05 * float(ref.x(1).abs().max()), rtol=0)
    sweep, sweep32 = probes.probe_sweep(data, cv=3, n_random=1), probes.probe_sweep(ref, cv=3, n_random=1)
    assert np.abs(np.array(sweep.score) - np.array(sweep32.score)).max() <= 2 / 24  # at most 2 of 24 predictions differ


@pytest.mark.parametrize("low", ["bf16", "half()"])
def test_projecting_out_in_reduced_precision_leaves_nothing_along_the_direction(low_models, low):
    """The projection is computed in float32 and rounded once to the model's dtype."""
    model = low_models[low]
    direction = torch.randn(32, generator=torch.Generator().manual_seed(3))
    seen = {}

    def grab(act, hook):
        seen["x"] = act

    tokens = model.to_tokens(PROMPTS[:4])
    with model.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", grab)]):
        probes.run_with_direction(model, tokens, "blocks.0.hook_resid_post", direction)
    x = seen["x"].float()
    u = direction / direction.norm()
    unit_roundoff = torch.finfo(seen["x"].dtype).eps / 2  # one rounding of each entry moves x . u by at most this x |x|
    assert float((x @ u).abs().max()) <= 1.01 * unit_roundoff * float(x.norm(dim=-1).max())
    assert_no_hooks(model)
