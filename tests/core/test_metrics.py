"""Metrics against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from mechinterp.core.metrics import kl_div, logit_diff, logits_at, logprob, normalise, prob, unembed
from mechinterp.errors import NonFiniteError, ShapeMismatchError

LOGITS = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]], [[5.0, 0.0, 0.0], [0.0, 0.0, 4.0]]])


def test_logits_at_positions():
    assert logits_at(LOGITS).tolist() == [[1.0, 2.0, 3.0], [0.0, 0.0, 4.0]]
    assert logits_at(LOGITS, torch.tensor([0, 1])).tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, 4.0]]


def test_logit_diff_logprob_prob():
    assert logit_diff(LOGITS, torch.tensor([2, 2]), torch.tensor([0, 1])).tolist() == [2.0, 4.0]
    expected = 3.0 - math.log(math.exp(1) + math.exp(2) + math.exp(3))
    assert logprob(LOGITS, 2)[0].item() == pytest.approx(expected, abs=1e-6)
    assert prob(LOGITS, torch.tensor([0, 0]), pos=0)[0].item() == pytest.approx(1 / 3, abs=1e-6)


def test_kl_div_closed_form():
    assert kl_div(LOGITS, LOGITS).abs().max().item() < 1e-6
    p = torch.tensor([[[0.0, 0.0]]])
    q = torch.tensor([[[math.log(3.0), 0.0]]])  # q = (3/4, 1/4), reference p = (1/2, 1/2)
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert kl_div(q, p).item() == pytest.approx(expected, abs=1e-6)


def test_normalise():
    assert normalise(torch.tensor([1.0, 2.0, 3.0]), clean=3.0, corrupted=1.0).tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(NonFiniteError, match="equal"):
        normalise(torch.tensor(1.0), 2.0, 2.0)
    with pytest.raises(NonFiniteError, match="NaN"):
        normalise(torch.tensor(float("nan")), 2.0, 1.0)


def test_shape_errors():
    with pytest.raises(ShapeMismatchError, match="one per prompt"):
        logit_diff(LOGITS, torch.tensor([1, 2, 0]), torch.tensor([0, 0]))
    with pytest.raises(ShapeMismatchError):
        kl_div(LOGITS, LOGITS[:1])


def test_unembed_equals_tl_final_norm_and_unembedding(tiny_model):
    tokens = torch.randint(3, 40, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        resid = tiny_model(tokens, stop_at_layer=tiny_model.cfg.n_layers)
        full = tiny_model.unembed(tiny_model.ln_final(resid))
        assert torch.allclose(unembed(tiny_model, resid), full, atol=1e-5)
        assert torch.allclose(full, tiny_model(tokens), atol=1e-5)
        assert torch.allclose(unembed(tiny_model, resid, [7, 2]), full[..., [7, 2]], atol=1e-5)


def test_normalise_keeps_dtype_and_reads_baselines_in_float64():
    value = torch.tensor([1.0, 2.0], dtype=torch.float32)
    out = normalise(value, clean=1.0 + 3e-8, corrupted=1.0 - 3e-8)  # float32 baselines would be equal
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert normalise(value.double(), clean=3.0, corrupted=1.0).dtype == torch.float64


def test_every_family_normalises_through_core(monkeypatch, tiny_model):
    """Patching (sweeps, path, attribution patching, tracing) and circuits' faithfulness call core.metrics.normalise."""
    from mechinterp.circuits import faithfulness, prepare_edge_patching
    from mechinterp.core import metrics
    from mechinterp.patching import activation_patch, attribution_patch, causal_trace, path_patch

    calls = []
    real = metrics.normalise
    monkeypatch.setattr(metrics, "normalise", lambda *a, **k: calls.append(1) or real(*a, **k))
    gen = torch.Generator().manual_seed(0)
    clean, corrupted = torch.randint(3, 48, (2, 2, 6), generator=gen)
    metric = lambda logits: logits[:, -1, 5] - logits[:, -1, 7]  # noqa: E731
    runs = {
        "activation_patch": lambda: activation_patch(tiny_model, clean, corrupted, metric, site="resid_pre", by="layer"),
        "path_patch": lambda: path_patch(tiny_model, clean, corrupted, metric, senders=["L0H0"]),
        "attribution_patch": lambda: attribution_patch(tiny_model, clean, corrupted, metric, sites="resid_pre"),
        "causal_trace": lambda: causal_trace(tiny_model, clean, metric=metric, positions=[1, 2], noise=3.0),
        "circuits.faithfulness": lambda: faithfulness(
            tiny_model, setup := prepare_edge_patching(tiny_model, clean, corrupted), metric, setup.graph.real),
    }
    for name, run in runs.items():
        before = len(calls)
        run()
        assert len(calls) > before, f"{name} normalises without core.metrics.normalise"
