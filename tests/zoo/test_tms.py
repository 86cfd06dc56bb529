"""The zoo's toy model of superposition: loads offline, stores more features than dimensions, reconstructs them."""

from __future__ import annotations

import pytest
import torch

from mechinterp.errors import MechinterpError
from mechinterp.zoo.tms import TMS_DIR, ToyModelOfSuperposition, load_tms


def test_shipped_model_stores_every_feature_in_superposition():
    tms = load_tms()
    assert (tms.n_features, tms.d_hidden) == (64, 16) and bool(tms.represented().all())
    x, h = tms.sample(5000, seed=1)
    assert x.shape == (5000, 64) and h.shape == (5000, 16)
    assert 0 < float((x > 0).float().mean()) < 0.05  # sparse
    with torch.no_grad():
        loss = (x - tms(x)).pow(2).sum(-1).mean()
    assert loss < 0.3 * x.pow(2).sum(-1).mean()  # far better than predicting zeros (card: 0.105 vs 0.643)
    dirs = tms.feature_directions()
    overlap = (dirs @ dirs.T - torch.eye(64)).abs().max()
    assert 0.1 < overlap < 0.9  # not orthogonal (64 > 16), yet no two features share a direction
    assert "Toy model of superposition" in (TMS_DIR / "card.md").read_text()


def test_bad_input(tmp_path):
    with pytest.raises(MechinterpError, match="train one"):
        load_tms(tmp_path)
    with pytest.raises(MechinterpError, match="feature_probability"):
        ToyModelOfSuperposition(8, 2, 0.0)
