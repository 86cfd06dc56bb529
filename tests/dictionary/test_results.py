"""TrainingLog and SAEEvaluation: serialise, reload, render offline."""

from __future__ import annotations

import torch

from mechinterp.dictionary import TrainingLog, superposition_data, train_sae


def test_training_log_round_trip_and_html(tmp_path):
    x, _, _ = superposition_data(600, d=8, n_features=12, p=0.1)
    log = train_sae(x, k=2, d_sae=16, batch_size=64, n_epochs=2, log_every=2).training_log
    back = TrainingLog.load(log.save(tmp_path / "log.json"))
    assert back == log
    assert len(log.step) == len(log.loss) == len(log.l0) >= 10 and log.n_steps == 20
    assert log.config["k"] == 2 and log.tokens[-1] == 1200
    html = log.to_html()
    assert "<img" in html and "<script src" not in html
    assert torch.isfinite(torch.tensor(log.loss)).all()
