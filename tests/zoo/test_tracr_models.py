"""zoo:tracr-reverse, zoo:tracr-frac-prevs and zoo:tracr-prev-tokens: offline loading, outputs against pure-Python
references of the RASP programs, size, and a well-formed ground-truth circuit."""

from __future__ import annotations

import random
import time

import pytest
import torch

import mechinterp
from mechinterp.testing import offline

NAMES = ("tracr-reverse", "tracr-frac-prevs", "tracr-prev-tokens")


@pytest.fixture(scope="module")
def loaded():
    """Both models, loaded with every socket connection refused, and their load times
    (TransformerLens imported beforehand: its import is not the model's load time)."""
    import transformer_lens  # noqa: F401

    models, seconds = {}, {}
    with offline():
        for name in NAMES:
            start = time.perf_counter()
            models[name] = mechinterp.load(f"zoo:{name}")
            seconds[name] = time.perf_counter() - start
    return models, seconds


def _random_inputs(words: list[str], n: int = 100, seed: int = 0, max_len: int = 5) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(words) for _ in range(rng.randint(1, max_len))] for _ in range(n)]


def test_reverse_matches_python(loaded):
    model = loaded[0]["tracr-reverse"]
    for seq in _random_inputs(["1", "2", "3"]):
        tokens = model.to_tokens(" ".join(seq))
        assert tokens.shape[1] == len(seq) + 1  # BOS + one token per word
        with torch.no_grad():
            logits = model(tokens)
        assert model.to_str_tokens(logits[0, 1:].argmax(-1)) == seq[::-1]


def test_frac_prevs_matches_python(loaded):
    model = loaded[0]["tracr-frac-prevs"]
    for seq in _random_inputs(["w", "x", "y", "z"], seed=1):
        with torch.no_grad():
            value = model(" ".join(seq))[0, 1:, 0]
        expected = [sum(t == "x" for t in seq[: i + 1]) / (i + 1) for i in range(len(seq))]
        assert torch.allclose(value, torch.tensor(expected), atol=1e-4), (seq, value, expected)


def test_prev_tokens_matches_python(loaded):
    """Output position p (BOS at 0) is input token p - 2 where it exists; positions 1-2 have none."""
    model = loaded[0]["tracr-prev-tokens"]
    for seq in _random_inputs(list("abcde"), seed=2, max_len=8):
        with torch.no_grad():
            logits = model(" ".join(seq))
        assert model.to_str_tokens(logits[0, 3:].argmax(-1)) == seq[:-2]


def test_architecture(loaded):
    reverse, frac = loaded[0]["tracr-reverse"], loaded[0]["tracr-frac-prevs"]
    assert (reverse.cfg.n_layers, reverse.cfg.n_ctx, reverse.cfg.d_vocab_out) == (4, 6, reverse.cfg.d_vocab)
    assert (frac.cfg.n_layers, frac.cfg.n_ctx, frac.cfg.d_vocab_out) == (2, 6, 2)
    prev = loaded[0]["tracr-prev-tokens"]
    assert (prev.cfg.n_layers, prev.cfg.n_ctx, prev.cfg.d_vocab_out) == (2, 9, prev.cfg.d_vocab)
    for model in (reverse, frac, prev):
        assert model.cfg.normalization_type is None and model.cfg.act_fn == "relu"
        assert model.cfg.attention_dir == "bidirectional"


@pytest.mark.parametrize("name", NAMES)
def test_size_and_load_time(loaded, name):
    folder = mechinterp.zoo.path(name)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size <= 10 * 2**20
    assert loaded[1][name] < 10.0


@pytest.mark.parametrize("name", NAMES)
def test_circuit_well_formed(loaded, name):
    circuit = mechinterp.zoo.read_json(name, "circuit.json")
    nodes = set(circuit["nodes"])
    assert {"embed", "logits"} <= nodes and circuit["source"].startswith("construction")
    for src, dst in circuit["edges"] + circuit["weight_edges"]:
        base, _, part = dst.partition(".")
        assert src in nodes - {"logits"} and base in nodes - {"embed"}, (src, dst)
        assert part in ("", "q", "k", "v") and (part == "" or base[0] == "L")
    assert all(edge in circuit["weight_edges"] for edge in circuit["edges"])
    assert set(circuit["ops"]) <= nodes
    # Components outside the circuit are the sublayers tracr left empty: zero weights.
    model = loaded[0][name]
    for layer in range(model.cfg.n_layers):
        for comp, weight in (
            (f"L{layer}H0", model.blocks[layer].attn.W_O),
            (f"MLP{layer}", model.blocks[layer].mlp.W_out),
        ):
            assert (weight.abs().max().item() > 0) == (comp in nodes), comp
    assert name in mechinterp.zoo.names() and "## Ground-truth circuit" in mechinterp.zoo.card(name)
