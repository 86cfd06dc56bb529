"""Every stochastic method takes ``seed=`` and draws from a local generator.

For each row: the global torch, NumPy and Python random states are the same before and after
the call; the same seed gives the same result twice (also after the global states were
reseeded in between); and a different seed gives a different draw (so ``seed`` is really used).
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

PROMPT = "w3 w1 w4 w1 w5"


def _metric(logits):
    return logits[:, -1, 4] - logits[:, -1, 7]


def _pair():
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(3, 48, (3, 8), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 2:5] = torch.randint(3, 48, (3, 3), generator=gen)
    return clean, corrupted


def _probe_data():
    from mechinterp.probes import ProbeDataset

    gen = torch.Generator().manual_seed(0)
    n, d = 60, 6
    y = (torch.rand(n, generator=gen) < 0.5).long()
    feats = [torch.randn(n, 1, d, generator=gen) + 2 * y[:, None, None] * (i == 1) for i in range(2)]
    return ProbeDataset(features=feats, y=y.numpy(), classes=[0, 1], hook_names=["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"],
                        layers=[0, 1], position_labels=["last"], types=[f"t{i % 7}" for i in range(n)])


def _lime(model, seed):
    from mechinterp.attribution import attribute

    return attribute(model, PROMPT, "w9", method="lime", n_samples=24, seed=seed, warn=False).scores


def _kernel_shap(model, seed):
    from mechinterp.attribution import attribute

    return attribute(model, PROMPT, "w9", method="kernel_shap", n_samples=24, seed=seed, warn=False).scores


def _resample(model, seed):
    from mechinterp.patching import activation_patch

    clean, _ = _pair()
    return activation_patch(model, clean, None, _metric, site="attn_out", by="layer", ablation="resample", seed=seed,
                            normalise=False).values


def _feature_resample(model, seed):
    from mechinterp.dictionary import SparseAutoencoder, feature_patch

    clean, _ = _pair()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        sae = SparseAutoencoder(model.cfg.d_model, 32, "topk", k=4, hook_name="blocks.0.hook_resid_post")
    return feature_patch(model, sae, clean, None, _metric, ablation="resample", seed=seed, normalise=False).values


def _trace(model, seed):
    from mechinterp.patching import causal_trace

    clean, _ = _pair()
    return causal_trace(model, clean, [2, 3], _metric, n_samples=2, seed=seed).values


def _head_scores(model, seed):
    from mechinterp.attention import head_scores

    return head_scores(model, n_probes=4, seg_len=4, seed=seed).scores


def _probe_sequences(model, seed):
    from mechinterp.attention.heads import probe_sequences

    return probe_sequences(model, n=4, seg_len=4, seed=seed)


def _probe_sweep(model, seed):
    from mechinterp.probes import probe_sweep

    res = probe_sweep(_probe_data(), n_random=2, seed=seed)
    return torch.tensor([res.score, res.control, res.random])


def _control_labels(model, seed):
    from mechinterp.probes import control_labels

    return torch.as_tensor(control_labels([f"t{i % 9}" for i in range(40)], np.arange(40) % 3, seed=seed))


def _random_directions(model, seed):
    from mechinterp.probes import random_directions

    return random_directions(16, 3, seed=seed)


def _causal_check(model, seed):
    from mechinterp.probes import causal_check

    clean, _ = _pair()
    direction = torch.ones(model.cfg.d_model)
    res = causal_check(model, None, direction, layer=0, tokens=clean, metric=_metric, scales=[1.0], n_random=2, seed=seed)
    return torch.tensor([res.metric_random, res.flip_random])


def _bootstrap(model, seed):
    from mechinterp.probes.stats import bootstrap_r2

    gen = torch.Generator().manual_seed(0)
    y = torch.randn(30, generator=gen).numpy()
    return torch.tensor(bootstrap_r2(y, y + 0.5 * torch.randn(30, generator=gen).numpy(), n_boot=20, seed=seed))


def _induction_task(model, seed):
    import mechinterp

    return mechinterp.tasks.load("induction", model, n=4, seed=seed, seq_len=4).clean_tokens


def _language_examples(model, seed):
    from mechinterp.tasks import language

    return [dataclasses.astuple(e) for e in language.examples("ioi", 4, seed=seed)]


def _repeated_tokens(model, seed):
    from mechinterp.zoo.diagnostics import repeated_tokens

    return repeated_tokens(model, batch=4, seg_len=4, seed=seed)


METHODS = {
    "lime": _lime,
    "kernel_shap": _kernel_shap,
    "activation_patch(ablation='resample')": _resample,
    "causal_trace": _trace,
    "dictionary.feature_patch(ablation='resample')": _feature_resample,
    "head_scores (generated probes)": _head_scores,
    "probe_sequences": _probe_sequences,
    "probe_sweep (controls, random directions)": _probe_sweep,
    "control_labels": _control_labels,
    "random_directions": _random_directions,
    "causal_check (random directions)": _causal_check,
    "bootstrap_r2": _bootstrap,
    "tasks.load('induction')": _induction_task,
    "language.examples": _language_examples,
    "zoo.diagnostics.repeated_tokens": _repeated_tokens,
}


def _states():
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _assert_states_equal(before, after, name):
    assert torch.equal(before[0], after[0]), f"{name} changed torch's global RNG state"
    np_b, np_a = before[1], after[1]
    assert np_b[0] == np_a[0] and np.array_equal(np_b[1], np_a[1]) and np_b[2:] == np_a[2:], f"{name} changed NumPy's global RNG state"
    assert before[2] == after[2], f"{name} changed Python's global RNG state"


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b) or (a.is_floating_point() and torch.allclose(a, b, rtol=0, atol=0, equal_nan=True))
    return a == b


@pytest.mark.parametrize("name", sorted(METHODS))
def test_seeded_local_randomness(tiny_model, name):
    fn = METHODS[name]
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    before = _states()
    first = fn(tiny_model, 1)
    _assert_states_equal(before, _states(), name)
    torch.manual_seed(999), np.random.seed(999), random.seed(999)  # a different global state
    again = fn(tiny_model, 1)
    assert _same(first, again), f"{name}: the same seed gave different results"
    other = fn(tiny_model, 2)
    assert not _same(first, other), f"{name}: seed=2 gave the same draw as seed=1 (is seed used?)"


@pytest.mark.parametrize("name", ["zoo:toy-lm", "zoo:attn-only-2l"])
def test_loading_a_model_keeps_the_global_rng_states(name):
    """TransformerLens seeds torch, NumPy and Python globally when a config has ``seed`` (the zoo's do)."""
    import mechinterp

    torch.manual_seed(321), np.random.seed(321), random.seed(321)
    before = _states()
    model = mechinterp.load(name)
    assert model.cfg.seed is not None  # the case that used to reseed everything
    _assert_states_equal(before, _states(), f"mechinterp.load({name!r})")


def test_seed_is_checked():
    from mechinterp.core.rng import check_seed
    from mechinterp.errors import MechinterpError

    assert check_seed(np.int64(3)) == 3
    for bad in (-1, 1.5, "0", None, True):
        with pytest.raises(MechinterpError, match="seed"):
            check_seed(bad)
