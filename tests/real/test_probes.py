"""A probe sweep on SmolLM2-135M-Instruct: a property with a known answer, above its control.

32 prompts "Here is a picture of a <word>", the word an animal or a food (16 each, every
word once, single tokens for SmolLM2's BPE). At the word's position a linear probe should
tell animals from foods at every layer on held-out words (the model knows what the words
mean; nothing in the prompt's form gives it away), while the Hewitt-Liang control task (a
random label per word, so held-out words carry labels never seen in training) stays near
chance: high selectivity.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechinterp import probes
from mechinterp.core.hooks import assert_no_hooks

pytestmark = pytest.mark.real

ANIMALS = "dog cat horse cow lion tiger bird sheep pig mouse rabbit bear wolf fox duck goat".split()
FOODS = "bread cheese rice pasta soup cake apple banana milk butter salad pizza steak sugar honey chicken".split()
LAYERS = [0, 5, 10, 15, 20, 25, 29]


def _prompts():
    words = [w for pair in zip(ANIMALS, FOODS) for w in pair]  # alternate, so folds are balanced
    return [f"Here is a picture of a {w}" for w in words], ["animal" if w in ANIMALS else "food" for w in words]


@pytest.fixture(scope="module")
def sweep(smollm2):
    prompts, labels = _prompts()
    data = probes.collect_activations(smollm2, prompts, labels, layers=LAYERS, progress=False)
    assert_no_hooks(smollm2)
    return data, probes.probe_sweep(data, cv=4, n_random=2)


def test_prompts_are_aligned_single_tokens(smollm2):
    prompts, _ = _prompts()
    tokens = smollm2.to_tokens(prompts)
    assert tokens.shape == (32, 7)  # no BOS, no padding: the word is the last token of every prompt


def test_probe_sweep_finds_the_category_above_its_control(sweep):
    data, result = sweep
    score, control = np.array(result.score)[:, 0], np.array(result.control)[:, 0]
    assert result.layers == LAYERS and result.n_examples == 32
    assert score.max() >= 0.9  # held-out words, 4-fold CV
    assert (score - control).mean() > 0.25  # selectivity: the control task cannot be solved on new words
    assert score.mean() > result.majority + 0.25
    assert np.mean(result.random_whitened) < score.mean() - 0.2  # random directions do not find it


def test_probe_sweep_in_bf16_matches_float32(smollm2_bf16, sweep):
    """A bf16 model: activations kept in bf16, probes fitted on float32 copies; same scores up to a few prompts."""
    data32, result32 = sweep
    prompts, labels = _prompts()
    data = probes.collect_activations(smollm2_bf16, prompts, labels, layers=LAYERS[:3], progress=False)
    assert data.features[0].dtype == torch.bfloat16 and data.x(0).dtype == torch.float32
    rel = (data.x(10) - data32.x(10)).norm() / data32.x(10).norm()
    assert rel < 0.05  # bf16 rounding through 11 blocks
    result = probes.probe_sweep(data, cv=4, n_random=1)
    assert np.abs(np.array(result.score) - np.array(result32.score)[:3]).max() <= 3 / 32
    assert_no_hooks(smollm2_bf16)
