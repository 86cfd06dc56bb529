"""Known features on compiled models: an SAE recovers every compiled residual feature of tracr-prev-tokens, and
what it cannot recover on tracr-reverse, and why.

**The bar (tracr-prev-tokens).** ``zoo:tracr-prev-tokens`` (compiled for this test by
``experiments/tracr/compile_tracr.py``) computes ``prev_1`` (the previous token) and ``prev_2`` (``prev_1`` one
position back). At ``blocks.1.hook_resid_post`` each token after BOS carries one value of ``tokens`` (5), ``indices``
(8), ``prev_1`` (5) and ``prev_2`` (5, none at the first positions): 23 compiled values, independent for i.i.d.
tokens, 780 distinct residual vectors over 2,000 random inputs of length 8. A ReLU + L1 SAE (32 latents,
λ 0.05, 30 epochs) matches **every one of the 23** at decoder cosine >= 0.9 (measured min 0.995 and 0.997 for
seeds 0 and 1) and has, for each, a latent that detects it at F1 >= 0.9 (measured min 0.985, 0.983).

Thresholds: cosine 0.9 (:func:`match_categorical_features`): a row for the difference ``e_v - e_w`` (value ``w``
kept in the bias) scores sqrt(m / 2(m-1)), 0.87 for 3 values and 0.79 for 5, so >= 0.9 means the value has a
latent of its own. F1 0.9 (:func:`detect_categorical_features`): the latent fires on at least ~90% of the value's
tokens and mostly only there; a latent for a combination of two values (a (token, index) pair) scores
2/(1 + m) for each, m the number of values of the other variable (0.33 for 5).

Measured on the same data, what does *not* recover the features: TopK at the true k = 4 reconstructs better
(explained variance 0.9997) but matches only 0-8 of the 23 (min cosine 0.51-0.75): with real-valued magnitudes and
few distinct inputs, exact codes other than the compiled one exist at the same L0. Shorter training (10 epochs) or
λ 0.2 with 64 latents also miss 2-6 values.

**Where recovery is impossible (tracr-reverse).** Site ``blocks.1.hook_resid_post`` (after MLP1 wrote
``opp_idx``): one value of each of ``tokens`` (3), ``indices`` (5), ``length`` (5), ``opp_idx`` (5), 18 compiled
features. Data: every input of length 1-5, each length equally weighted (3645 tokens). Measured (64 latents, 10
epochs, explained variance 0.996-0.999): the 3 ``tokens`` values are matched (>= 0.9); ``indices``, ``length``
and ``opp_idx`` are not (mean over the 18 values 0.74-0.78 for ReLU + L1, 0.69-0.70 for TopK k = 4; an untrained
SAE 0.61), and neither 16-64 latents nor TopK at the true k change that. The reasons are structural:

* ``length``, ``indices`` and ``opp_idx`` are all functions of the (length, index) pair: 15 latents, one per
  pair, reconstruct exactly at L0 2, sparser than the 15 compiled ones at L0 3. Sparsity prefers the pairs
  (the "composed features" of Anders et al. 2024).
* One value of each variable is always on, so a dictionary can keep one value in the bias and code the others
  as differences (sparser again), and can move a shared shift between a variable's latents and the bias.
* From layer 2 on, ``opp_idx-1:v-1`` is on exactly when ``opp_idx:v`` is: no method that learns from
  activations can separate them (asserted below).

``tokens`` is independent of the rest, and its values are recovered: that is what is asserted there.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import mechinterp
from mechinterp.dictionary import (
    SparseAutoencoder,
    detect_categorical_features,
    match_categorical_features,
    tracr_residual_labels,
    train_sae,
)
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


@pytest.fixture(scope="module")
def prev_tokens_activations():
    """``blocks.1.hook_resid_post`` of tracr-prev-tokens on 2,000 random inputs of length 8, BOS dropped."""
    model = mechinterp.load("zoo:tracr-prev-tokens")
    words = torch.tensor(model.tokenizer.convert_tokens_to_ids(list("abcde")))
    g = torch.Generator().manual_seed(0)
    tokens = torch.cat([torch.full((2000, 1), model.tokenizer.bos_token_id),
                        words[torch.randint(len(words), (2000, 8), generator=g)]], dim=1)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter="blocks.1.hook_resid_post")
    return cache["blocks.1.hook_resid_post"][:, 1:].reshape(-1, model.cfg.d_model)


def test_sae_recovers_every_compiled_feature_of_prev_tokens(prev_tokens_activations):
    x = prev_tokens_activations
    labels = tracr_residual_labels("tracr-prev-tokens")
    sae = train_sae(x, architecture="standard", l1_coefficient=0.05, d_sae=32, batch_size=256, n_epochs=30, lr=3e-3)
    assert sae.training_log.explained_variance[-1] > 0.99
    cosines = match_categorical_features(sae.W_dec, labels, x)
    with torch.no_grad():
        f1 = detect_categorical_features(sae.encode(x), labels, x)
    assert len(cosines) == len(f1) == 23 and {k.split(":")[0] for k in cosines} == {
        "tokens", "indices", "prev_1_3", "prev_2_1"}
    assert min(cosines.values()) >= 0.9, cosines  # measured 0.995
    assert min(f1.values()) >= 0.9, f1  # measured 0.985
    torch.manual_seed(0)
    untrained = SparseAutoencoder(len(labels), 32, "standard")
    assert min(match_categorical_features(untrained.W_dec, labels, x).values()) < 0.9
    with torch.no_grad():
        assert min(detect_categorical_features(untrained.encode(x), labels, x).values()) < 0.9


def test_detection_metric_on_known_codes():
    """One latent per value scores F1 1; a latent for a pair of values (a: 2 values, b: 2 values) scores 2/3 for
    each value of it (recall 1/2, precision 1)."""
    labels = ["a:0", "a:1", "b:0", "b:1"]
    x = torch.tensor([[1.0, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 1]])
    assert detect_categorical_features(x, labels, x) == {label: 1.0 for label in labels}
    pairs = torch.eye(4)  # one latent per (a, b) combination
    assert all(abs(v - 2 / 3) < 1e-6 for v in detect_categorical_features(pairs, labels, x).values())
    with pytest.raises(MechinterpError, match="same tokens"):
        detect_categorical_features(pairs[:3], labels, x)


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
