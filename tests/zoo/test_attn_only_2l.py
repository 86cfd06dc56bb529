"""zoo:attn-only-2l: it loads offline and its named heads do what the card says."""

from __future__ import annotations


import pytest
import torch

import mechinterp
from mechinterp.testing import offline
from mechinterp.zoo import diagnostics as dg

SEG = 20


@pytest.fixture(scope="module")
def model():
    with offline():
        return mechinterp.load("zoo:attn-only-2l")


@pytest.fixture(scope="module")
def circuit():
    return mechinterp.zoo.read_json("attn-only-2l", "circuit.json")


@pytest.fixture(scope="module")
def tokens(model):
    return dg.repeated_tokens(model, batch=64, seg_len=SEG, seed=12345)


def test_card_names_the_heads(circuit):
    card = mechinterp.zoo.card("attn-only-2l")
    for head in circuit["heads"]["previous_token"] + circuit["heads"]["induction"]:
        assert head in card
    nodes = set(circuit["nodes"])
    for src, dst in circuit["edges"]:
        assert src in nodes and dst.split(".")[0] in nodes


def test_named_heads_have_high_scores(model, tokens, circuit):
    prev = dg.previous_token_scores(model, tokens)
    ind = dg.induction_scores(model, tokens, SEG)
    for name in circuit["heads"]["previous_token"]:
        assert prev[dg.parse_head(name)] > 0.4, name
    for name in circuit["heads"]["induction"]:
        assert ind[dg.parse_head(name)] > 0.4, name


def test_repeated_loss_is_low(model, tokens):
    assert dg.repeated_loss(model, tokens, SEG) < 0.05


def test_ablating_named_heads_breaks_induction(model, tokens, circuit):
    base = dg.repeated_loss(model, tokens, SEG)
    for group in ("previous_token", "induction"):
        assert dg.repeated_loss(model, tokens, SEG, ablate=circuit["heads"][group]) - base > 1.0, group


def test_training_script_writes_a_loadable_model(tmp_path):
    from mechinterp.zoo.train.attn_only_2l import main

    metrics = main(steps=3, out=tmp_path)
    assert {"repeated_loss", "heads", "ablation_delta", "train_wall_s"} <= set(metrics)
    assert (tmp_path / "card.md").exists() and (tmp_path / "circuit.json").exists()
    loaded = mechinterp.load(str(tmp_path))
    assert loaded.cfg.n_layers == 2 and loaded.cfg.attn_only
    assert torch.isfinite(loaded(loaded.to_tokens("t1 t2 t3"))).all()
