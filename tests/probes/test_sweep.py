"""Sweeps on synthetic activations with planted linear structure: the right layer wins,
intervals cover, and the controls behave as Hewitt & Liang describe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mechinterp.errors import MechinterpError
from mechinterp.probes import ProbeDataset, SweepResult, probe_sweep


def _dataset(features, y, types, classes=(0, 1)):
    return ProbeDataset(features=[f[:, None] for f in features], y=np.asarray(y), classes=list(classes),
                        hook_names=[f"blocks.{i}.hook_resid_post" for i in range(len(features))],
                        layers=list(range(len(features))), position_labels=["last"], types=list(types))


@pytest.fixture(scope="module")
def planted():
    """Layer 0: noise. Layer 1: the label along one direction. Layer 2: word-type identity (memorisable)."""
    g = torch.Generator().manual_seed(0)
    n, d, n_types = 400, 24, 16
    types = torch.randint(0, n_types, (n,), generator=g)
    y = (torch.rand(n, generator=g) < 0.5).long()
    layer0 = torch.randn(n, d, generator=g)
    layer1 = torch.randn(n, d, generator=g)
    layer1[:, 0] += 3 * (2 * y - 1)
    embed = torch.randn(n_types, d, generator=g) * 3
    layer2 = embed[types] + 0.3 * torch.randn(n, d, generator=g)
    return [layer0, layer1, layer2], y.numpy(), [f"t{t}" for t in types.tolist()]


def test_sweep_finds_the_layer_and_reports_controls(planted):
    feats, y, types = planted
    result = probe_sweep(_dataset(feats, y, types), cv=4, n_random=4)
    score = np.asarray(result.score)[:, 0]
    assert score[1] > 0.95 and score[0] < 0.62  # planted layer found; noise layer near chance
    lo, hi = np.asarray(result.ci_low)[:, 0], np.asarray(result.ci_high)[:, 0]
    assert np.all(lo <= score) and np.all(score <= hi) and np.all(hi - lo < 0.15)
    control = np.asarray(result.control)[:, 0]
    # layer 2 encodes the type, so a probe learns the (random) control labels: not selective
    assert control[2] > 0.8 and control[1] < 0.65
    assert result.selectivity[1][0] > 0.3
    assert abs(result.majority - max(y.mean(), 1 - y.mean())) < 1e-9
    assert np.asarray(result.random)[0, 0] < 0.62
    assert result.best()[0] == 1
    df = result.to_dataframe()
    assert list(df.columns[:3]) == ["layer", "position", "accuracy"] and len(df) == 3


def test_sweep_accuracy_equals_sklearn_per_layer(planted):
    feats, y, types = planted
    result = probe_sweep(_dataset(feats, y, types), test_size=0.3, controls=False, seed=3)
    from mechinterp.probes import make_splits

    train, test = make_splits(y, test_size=0.3, seed=3)[0]
    for layer, f in enumerate(feats):
        ref = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(f[train], y[train])
        assert abs(result.score[layer][0] - ref.score(f[test], y[test])) <= 0.02


def test_mass_mean_ridge_and_given_test_set(planted):
    feats, y, types = planted
    mm = probe_sweep(_dataset(feats, y, types), probe="mass-mean", cv=3, n_random=2)
    assert mm.score[1][0] > 0.95
    target = feats[1][:, 0].double().numpy() * 2.0
    reg = ProbeDataset(features=[f[:, None] for f in feats], y=target, classes=None, hook_names=["a", "b", "c"],
                       layers=[0, 1, 2], position_labels=["last"], types=types)
    r2 = probe_sweep(reg, cv=3, n_random=2)
    assert r2.metric == "r2" and r2.score[1][0] > 0.99 and r2.score[0][0] < 0.1
    train, test = _dataset([f[:300] for f in feats], y[:300], types[:300]), _dataset([f[300:] for f in feats], y[300:], types[300:])
    held = probe_sweep(train, test=test, n_random=2)
    assert held.n_examples == 100 and held.split == "given test set" and held.score[1][0] > 0.95
    with pytest.raises(MechinterpError, match="ridge"):
        probe_sweep(_dataset(feats, y, types), probe="ridge")


def test_result_roundtrip_and_html(planted, tmp_path):
    feats, y, types = planted
    result = probe_sweep(_dataset(feats, y, types), n_random=2)
    back = SweepResult.load(result.save(tmp_path / "r.json"))
    assert back.score == result.score and back.classes == result.classes
    html = result.to_html()
    assert "<img" in html and "http" not in html.replace("http://www.w3.org", "")


def test_whitened_random_directions_stay_near_chance_when_the_label_dominates_variance():
    """The label is the top direction of variance: raw random directions decode it, whitened ones do not.

    With total-covariance whitening, a balanced binary label moves the class means by at most
    one whitened standard deviation, so a random whitened direction (|cos| ~ 1/sqrt(d) with the
    label direction) separates them by about 2/sqrt(d) = 0.29 sd here: accuracy near 0.5.
    """
    g = torch.Generator().manual_seed(1)
    n, d = 600, 48
    y = (torch.rand(n, generator=g) < 0.5).long()
    x = torch.randn(n, d, generator=g)
    x[:, 0] += 10 * (2 * y - 1)
    result = probe_sweep(_dataset([x], y.numpy(), [str(i) for i in range(n)]), cv=3, n_random=8)
    assert result.score[0][0] > 0.99
    assert result.random[0][0] > 0.75  # the label carries ~99% of the variance: any direction sees it
    assert result.random_whitened[0][0] < 0.62
    assert "random_whitened" in result.to_dataframe().columns


@pytest.mark.parametrize("kwargs,name", [({"C": float("nan")}, "C"), ({"C": 0.0}, "C"), ({"C": -1.0}, "C"),
                                         ({"C": float("inf")}, "C"), ({"max_iter": 0}, "max_iter"),
                                         ({"max_iter": -3}, "max_iter")])
def test_bad_C_or_max_iter_raises_naming_it(planted, kwargs, name):
    """Issue 16 item 8: ``C=nan`` / ``max_iter=0`` gave chance accuracy with no error."""
    feats, y, types = planted
    with pytest.raises(MechinterpError, match=rf"\b{name}\b"):
        probe_sweep(_dataset(feats, y, types), cv=2, n_random=0, controls=False, **kwargs)
