"""Known features on a compiled model: what an SAE on tracr-reverse's residual stream recovers, and what it cannot.

Site ``blocks.1.hook_resid_post`` (after MLP1 wrote ``opp_idx``): at every token after BOS exactly one value of
each of 4 categorical variables is on: ``tokens`` (3 values), ``indices`` (5), ``length`` (5), ``opp_idx`` (5),
18 compiled features, plus the constant ``one`` and a numerical attention output. Data: every input of length
1-5, each length equally weighted (shorter inputs repeated), 3645 tokens.

Metric (:func:`match_categorical_features`): best cosine of a decoder row with a compiled direction, both
projected onto where the data varies (the all-ones direction of each one-hot block never varies: it is bias).
Threshold 0.9: a row for the difference ``e_v - e_w`` (value ``w`` kept in the bias) scores sqrt(m / 2(m-1)),
0.87 for 3 values, 0.79 for 5, so >= 0.9 means the value has a latent of its own.

Measured (64 latents, 10 epochs, explained variance 0.996-0.999): the 3 ``tokens`` values are matched (>= 0.9);
``indices``, ``length`` and ``opp_idx`` are not (mean over the 18 values 0.74-0.78 for ReLU + L1, 0.69-0.70 for
TopK k = 4; an untrained SAE 0.61). **The issue's bar "every compiled feature matched" is not met, and the
reasons are structural, not a training failure:**

* ``length``, ``indices`` and ``opp_idx`` are all functions of the (length, index) pair: 15 latents, one per
  pair, reconstruct exactly at L0 2, sparser than the 15 compiled ones at L0 3. Sparsity prefers the pairs.
* One value of each variable is always on, so a dictionary can keep one value in the bias and code the others
  as differences (sparser again), and can move a shared shift between a variable's latents and the bias.
* From layer 2 on, ``opp_idx-1:v-1`` is on exactly when ``opp_idx:v`` is: no method that learns from
  activations can separate them (asserted below).

``tokens`` is independent of the rest, and its values are recovered: that is what is asserted.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import mechinterp
from mechinterp.dictionary import SparseAutoencoder, match_categorical_features, tracr_residual_labels, train_sae
from mechinterp.errors import MechinterpError

SITES = ("blocks.1.hook_resid_post", "blocks.2.hook_resid_post")


@pytest.fixture(scope="module")
def activations():
    model = mechinterp.load("zoo:tracr-reverse")
    rows: dict[str, list[torch.Tensor]] = {site: [] for site in SITES}
    with torch.no_grad():
        for n in range(1, 6):  # one batch per length: tracr models take no padding
            tokens = model.to_tokens([" ".join(p) for p in itertools.product("123", repeat=n)])
            _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in SITES)
            for site in SITES:  # positions after BOS; each length weighted equally
                rows[site].append(cache[site][:, 1:].reshape(-1, model.cfg.d_model).repeat(3 ** (5 - n), 1))
    return {site: torch.cat(r) for site, r in rows.items()}


def test_sae_recovers_the_independent_compiled_variable(activations):
    x = activations[SITES[0]]
    labels = tracr_residual_labels("tracr-reverse")
    sae = train_sae(x, architecture="standard", l1_coefficient=0.05, d_sae=64, batch_size=64, n_epochs=10, lr=3e-3)
    assert sae.training_log.explained_variance[-1] > 0.99
    scores = match_categorical_features(sae.W_dec, labels, x)
    assert sorted({k.split(":")[0] for k in scores}) == ["indices", "length_5", "opp_idx_4", "tokens"] and len(scores) == 18
    assert all(scores[f"tokens:{v}"] > 0.9 for v in (1, 2, 3)), scores
    torch.manual_seed(3)
    untrained = match_categorical_features(SparseAutoencoder(len(labels), 64, "standard").W_dec, labels, x)
    assert max(untrained[f"tokens:{v}"] for v in (1, 2, 3)) < 0.9
    assert sum(scores.values()) / 18 > sum(untrained.values()) / 18 + 0.08  # measured 0.78 vs 0.61


def test_deeper_compiled_features_cannot_be_told_apart(activations):
    """At layer 2 ``opp_idx-1:v-1`` fires exactly with ``opp_idx:v``: any dictionary sees one feature."""
    labels = tracr_residual_labels("tracr-reverse")
    on = activations[SITES[1]].abs() > 0.5
    for v in range(1, 6):
        a, b = labels.index(f"opp_idx_4:{v}"), labels.index(f"opp_idx-1_3:{v - 1}")
        assert on[:, a].any() and torch.equal(on[:, a], on[:, b])


def test_metric_on_known_dictionaries():
    """Two independent one-hot variables (3 and 4 values) plus a constant: exact rows score 1, difference rows
    sqrt(m / 2(m-1)), another value of the variable -1/(m-1)."""
    labels = ["a:0", "a:1", "a:2", "one", "b:0", "b:1", "b:2", "b:3"]
    pairs = list(itertools.product(range(3), range(4)))
    x = torch.zeros(len(pairs) * 10, 8)
    for i, (a, b) in enumerate(pairs * 10):
        x[i, [a, 3, 4 + b]] = 1.0
    exact = torch.eye(8)[[0, 1, 2, 4, 5, 6, 7]] + 0.3 * torch.eye(8)[3]  # a shift along "one" is invisible
    assert all(abs(v - 1) < 1e-5 for v in match_categorical_features(exact, labels, x).values())
    difference = torch.tensor([[-1.0, 1, 0, 0, 0, 0, 0, 0], [-1.0, 0, 1, 0, 0, 0, 0, 0]])  # a:0 kept in the bias
    scores = match_categorical_features(difference, labels, x)
    assert abs(scores["a:1"] - (3 / 4) ** 0.5) < 1e-5 and abs(scores["a:0"] + (3 / 4) ** 0.5) < 1e-5
    assert abs(match_categorical_features(torch.eye(8)[[1]], labels, x)["a:0"] + 0.5) < 1e-5  # another value
    with pytest.raises(MechinterpError, match="labels"):
        match_categorical_features(torch.randn(3, 5), labels, x)
    with pytest.raises(MechinterpError, match="tracr"):
        tracr_residual_labels("toy-lm")
