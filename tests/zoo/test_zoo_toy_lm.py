"""zoo:toy-lm: loads offline, solves every task on held-out prompts, and its training script runs."""

from __future__ import annotations

import json

import pytest
import torch

import mechinterp
from mechinterp.testing import offline

TASKS = ("ioi", "facts", "sentiment", "greater-than", "induction")


@pytest.fixture(scope="module")
def model():
    with offline():
        return mechinterp.load("zoo:toy-lm")


def test_architecture(model):
    cfg = model.cfg
    assert cfg.n_layers >= 4 and not cfg.attn_only and cfg.act_fn == "gelu"
    assert sum(p.numel() for p in model.parameters()) * 4 <= 10e6


@pytest.mark.parametrize("name", TASKS)
def test_held_out_accuracy(model, name):
    kw = {} if name == "induction" else {"split": "test"}
    task = mechinterp.tasks.load(name, model, n=128, seed=7, **kw)
    with torch.no_grad():
        clean, corrupted = model(task.clean_tokens), model(task.corrupted_tokens)
    assert task.accuracy(clean) >= 0.95
    assert (task.metric(clean) - task.metric(corrupted)).mean() > 0


def test_card_and_circuit():
    card = mechinterp.zoo.card("toy-lm")
    for name in TASKS:
        assert f"| {name} |" in card
    circuit = mechinterp.zoo.read_json("toy-lm", "circuit.json")
    assert circuit["source"] == "activation patching per head"
    assert set(circuit["effects"]) == set(TASKS)


def test_training_script_runs(tmp_path, monkeypatch):
    from mechinterp.zoo.train import toy_lm

    monkeypatch.setattr(toy_lm, "MIX", {k: 2 for k in toy_lm.MIX})  # a 10-sequence batch: a smoke run
    metrics = toy_lm.main(steps=3, out=tmp_path)
    assert metrics["steps"] == 3 and set(metrics["held_out"]) == set(TASKS)
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 3
    again = mechinterp.zoo.load_model(tmp_path)
    assert again.cfg.d_vocab == mechinterp.zoo.load_model("toy-lm").cfg.d_vocab


def test_template_dropout_keeps_slots_bos_and_answer():
    from mechinterp.tasks import vocab
    from mechinterp.zoo.train import toy_lm

    ids = {w: i + len(toy_lm.SPECIAL_TOKENS) for i, w in enumerate(vocab.all_words())}
    plain = toy_lm.sample_batch(5, 0, ids)
    assert torch.equal(plain, toy_lm.sample_batch(5, 0, ids, 0.0))  # the shipped recipe, unchanged
    dropped = toy_lm.sample_batch(5, 0, ids, 0.5)
    assert dropped.shape == plain.shape and torch.equal(dropped, toy_lm.sample_batch(5, 0, ids, 0.5))
    changed = dropped != plain
    assert changed.any() and bool((dropped[changed] == toy_lm.PAD).all())  # only ever to <pad>
    assert torch.equal(dropped[:, 0], plain[:, 0])  # <bos> kept
    n_task = sum(v for k, v in toy_lm.MIX.items() if k != "induction")
    assert torch.equal(dropped[n_task:], plain[n_task:])  # induction rows untouched
    # Every slot word (the country, the names, ...) and the answer survive.
    row = 0
    for task, count in toy_lm.MIX.items():
        if task == "induction":
            continue
        for ex in toy_lm.language.examples(task, count, seed=5, split="train"):
            keep = toy_lm._slot_words(ex)
            for i in keep:
                assert dropped[row, 1 + i] == plain[row, 1 + i]
            assert dropped[row, 1 + len(ex.clean)] == ids[ex.answer]
            row += 1
