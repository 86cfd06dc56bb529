"""Causal tracing: restoring the last state recovers the clean run; the batched map equals the loop."""

from __future__ import annotations

import pytest
import torch

from mechinterp.errors import MechinterpError, NonFiniteError
from mechinterp.patching import causal_trace
from mechinterp.patching.tracing import restored_layers


def test_last_layer_last_token_restores_clean(tiny_model, pair, metric):
    clean, _, _, _ = pair
    trace = causal_trace(tiny_model, clean, [2, 3], metric, n_samples=3)
    assert trace.dims == ("pos", "layer") and trace.values.shape == (10, 2)
    assert float(trace.values[-1, -1]) == pytest.approx(1.0, abs=1e-5)
    # States before the subject were never noised: restoring them changes nothing.
    torch.testing.assert_close(trace.values[:2], torch.zeros(2, 2), atol=1e-5, rtol=0)
    # The noised run is the base: base_value is the mean metric with noise, target the clean one.
    assert trace.target_value == pytest.approx(float(metric(tiny_model(clean)).mean()), abs=1e-5)


def test_noise_by_hand(tiny_model, pair, metric):
    clean, _, _, _ = pair
    trace = causal_trace(tiny_model, clean, [[2], [3], [2, 4]], metric, n_samples=2, noise=2.0, noise_std=0.5, seed=7)
    gen = torch.Generator().manual_seed(7)
    eps = torch.randn(2, 3, 10, 32, generator=gen) * 1.0
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[0, 2] = mask[1, 3] = mask[2, 2] = mask[2, 4] = True
    eps = (eps * mask[None, :, :, None]).reshape(6, 10, 32)
    logits = tiny_model.run_with_hooks(clean.repeat(2, 1), fwd_hooks=[("hook_embed", lambda a, hook: a + eps)])
    assert trace.base_value == pytest.approx(float(metric(logits[:3]).mean() + metric(logits[3:]).mean()) / 2, abs=1e-5)


@pytest.mark.parametrize("kind,window", [("resid", 1), ("mlp", 2), ("attn", 3)])
def test_batched_equals_naive(tiny_model, pair, metric, kind, window):
    clean, _, _, _ = pair
    fast = causal_trace(tiny_model, clean, [2, 3], metric, kind=kind, window=window, n_samples=2)
    naive = causal_trace(tiny_model, clean, [2, 3], metric, kind=kind, window=window, n_samples=2, strategy="naive")
    torch.testing.assert_close(fast.raw, naive.raw, atol=1e-5, rtol=0)


def test_window_layers():
    assert restored_layers(5, 10, 12) == list(range(0, 10))
    assert restored_layers(0, 1, 4) == [0]
    assert restored_layers(3, 3, 4) == [2, 3]


def test_bad_input(tiny_model, pair, metric):
    clean, _, _, _ = pair
    with pytest.raises(MechinterpError):
        causal_trace(tiny_model, clean, None, metric)
    with pytest.raises(MechinterpError):
        causal_trace(tiny_model, clean, [40], metric)
    with pytest.raises(MechinterpError):
        causal_trace(tiny_model, clean, [1], metric, kind="embed")
    with pytest.raises(MechinterpError, match="noise must"):  # issue 16: was a NonFiniteError after the whole trace
        causal_trace(tiny_model, clean, [1], metric, noise=0.0)


# --- issue 16: noise must be positive; base == target cannot be normalised ---------------------


@pytest.mark.parametrize("arg,bad", [("noise", 0.0), ("noise", -1.0), ("noise", float("nan")), ("noise_std", 0.0),
                                     ("n_samples", 0), ("n_samples", 2.5), ("window", 0), ("window", 1.5),
                                     ("chunk_size", -1), ("chunk_size", 0), ("memory_budget", 0)])
def test_bad_sizes_raise(tiny_model, pair, metric, arg, bad):
    clean, _, _, _ = pair
    kw = {"n_samples": 2, arg: bad}
    with pytest.raises(MechinterpError, match=rf"{arg} must"):
        causal_trace(tiny_model, clean, [1], metric, **kw)


def test_nearly_equal_base_and_target_raise(tiny_model, pair, metric):
    clean, _, _, _ = pair
    # Noise too small to move the metric by more than float rounding: base and target differ by ~1e-7.
    with pytest.raises(MechinterpError, match="normalise=False"):
        causal_trace(tiny_model, clean, [1], metric, n_samples=2, noise=1e-7)
    raw = causal_trace(tiny_model, clean, [1], metric, n_samples=2, noise=1e-7, normalise=False)
    assert abs(raw.target_value - raw.base_value) > 0  # nonzero, yet meaningless to normalise by
