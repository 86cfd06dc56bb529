"""The bars: every method recovers the compiled tracr circuits and the attn-only-2l induction circuit."""

from __future__ import annotations

import pytest

import mechinterp
import torch

from mechinterp.circuits import SCORERS, compare_to_reference, discover, faithfulness, patch_edges, reference_mask, setup_for
from mechinterp.errors import MechinterpError

EDGE_METHODS = [m for m in SCORERS if m != "node"]
FAST = {"acdc": {"distance": "l2", "thresholds": [1e-3, 1e-2, 0.1]}}


@pytest.mark.parametrize("method", EDGE_METHODS)
def test_frac_prevs_every_method_auc_1(frac, method):
    model, task, setup = frac
    circuit = discover(model, task, method, "zero", setup=setup, **FAST.get(method, {}))
    assert compare_to_reference(circuit, task.ground_truth.circuit)["auc"] == 1.0
    assert circuit.top_n(5).nodes() == ["embed", "MLP0", "L1H0", "logits"]


@pytest.mark.parametrize("method", EDGE_METHODS)
def test_prev_tokens_every_method_auc_1(prev_tokens, method):
    """Zero ablation, as ACDC uses on tracr: a corrupted run keeps the positions, so the query and key edges that
    read only ``indices`` carry no difference there (every method then scores AUC 0.71)."""
    model, task, setup = prev_tokens
    circuit = discover(model, task, method, "zero", setup=setup, **FAST.get(method, {}))
    assert compare_to_reference(circuit, task.ground_truth.circuit)["auc"] == 1.0
    assert circuit.top_n(7).nodes() == ["embed", "L0H0", "L1H0", "logits"]


@pytest.mark.parametrize("method", ["exact", "acdc"])
def test_reverse_exact_and_acdc_auc_1(reverse, method):
    model, task, setup = reverse
    circuit = discover(model, task, method, "zero", setup=setup, **FAST.get(method, {}))
    assert compare_to_reference(circuit, task.ground_truth.circuit)["auc"] == 1.0


@pytest.mark.parametrize("method", ["eap", "eap-ig-inputs", "eap-ig-activations"])
def test_reverse_gradient_methods_rank_most_of_the_circuit(reverse, method):
    # Gradients vanish on flat pieces of tracr's discretising MLPs, so some circuit edges score 0.
    model, task, setup = reverse
    circuit = discover(model, task, method, "zero", setup=setup)
    assert compare_to_reference(circuit, task.ground_truth.circuit)["auc"] >= 0.93


def test_reference_circuit_alone_is_faithful(reverse):
    model, task, setup = reverse
    circuit = discover(model, task, "eap", "zero", setup=setup).with_edges(task.ground_truth.circuit["edges"])
    assert abs(float(faithfulness(model, setup, task.metric, circuit)[0]) - 1) < 1e-4


def test_node_first_pass_restricts_exact(frac):
    model, task, setup = frac
    circuit = discover(model, task, "exact", "zero", setup=setup, node_first_pass=3)
    assert compare_to_reference(circuit, task.ground_truth.circuit)["auc"] == 1.0
    with pytest.raises(MechinterpError, match="node_first_pass"):
        discover(model, task, "eap", "zero", setup=setup, node_first_pass=3)


@pytest.fixture(scope="module")
def induction():
    from mechinterp.circuits import setup_for

    model = mechinterp.load("zoo:attn-only-2l")
    # Random-token corruption (ACDC's; every token differs, so queries, keys and values are all
    # visible to corrupted patching) with the library's default ablation, for every method.
    task = mechinterp.tasks.load("induction", model, n=12, seed=0, corruption="random")
    return model, task, setup_for(model, task, "corrupted")


# Measured (n=12, seed 0, corrupted ablation; benchmarks/circuits_recovery.py): exact 0.998,
# ACDC 0.994 (ROC from the threshold sweep, 9 thresholds; 0.973 with the 3 used here),
# EAP-IG activations 0.964, EAP-IG inputs 0.891, EAP 0.798.
@pytest.mark.parametrize("method", ["exact", "acdc", "eap-ig-activations"])
def test_induction_auc_at_least_095(induction, method):
    model, task, setup = induction
    options = {"acdc": {"distance": "kl", "thresholds": [0.002, 0.02, 0.2]}}.get(method, {})
    circuit = discover(model, task, method, "corrupted", setup=setup, **options)
    assert compare_to_reference(circuit, task.ground_truth.circuit)["auc"] >= 0.95


@pytest.mark.xfail(strict=True, reason=(
    "known gap: EAP is the gradient at the clean run, where the induction heads attend 0.97 to the "
    "answer's first copy; the saturated softmax gives the K-composition edges L0H2 -> L1Hx.k scores "
    "-0.11..-0.48 against exact -5.2..-7.3, and embed -> L0H2.v +0.03 against -9.7 (AUC 0.798)"))
def test_induction_eap_auc_at_least_095(induction):
    model, task, setup = induction
    circuit = discover(model, task, "eap", "corrupted", setup=setup)
    assert compare_to_reference(circuit, task.ground_truth.circuit)["auc"] >= 0.95


@pytest.mark.xfail(strict=True, reason=(
    "known gap: the input path moves every query and key together, so wherever the key signal is "
    "large the attention is already saturated; L0H2 -> L1Hx.k get -0.36..-0.64 against exact "
    "-5.2..-7.3 at 5 or 30 steps (AUC 0.891); EAP-IG over activations (one layer at a time) gets -1.4..-1.5, AUC 0.964"))
def test_induction_eap_ig_inputs_auc_at_least_095(induction):
    model, task, setup = induction
    circuit = discover(model, task, "eap-ig-inputs", "corrupted", setup=setup)
    assert compare_to_reference(circuit, task.ground_truth.circuit)["auc"] >= 0.95


def test_induction_reference_edges_are_each_necessary(induction):
    """Knocking any reference edge out of the reference circuit costs faithfulness (>= 5%);
    the positional edges (embed -> previous-token heads' q/k) do nothing under the task's ablation."""
    model, task, setup = induction
    ref = task.ground_truth.circuit
    g = setup.graph
    mask = reference_mask(g, ref)
    idx = torch.nonzero(mask).tolist()
    knock = torch.stack([mask] + [mask & ~_only(g, i, j) for i, j in idx])
    f = faithfulness(model, setup, task.metric, knock)
    assert (f[0] - f[1:] > 0.05).all(), f
    pos = reference_mask(g, ref["positional_edges"])
    masks = torch.stack([torch.zeros(g.real.shape), pos.float()])
    values = [float(task.metric(row).mean()) for row in patch_edges(model, setup, masks)]
    assert abs(values[1] - values[0]) < 0.2, values  # all four patched at once; the logit difference is ~11


def _only(g, i, j):
    m = torch.zeros_like(g.real)
    m[i, j] = True
    return m


def test_toy_lm_ioi_circuit_of_10_percent_of_edges_is_80_percent_faithful():
    """Issue #7 bar: on zoo:toy-lm IOI a circuit of at most 10% of the edges reaches
    faithfulness >= 0.8 (exact per-edge patching, corrupted ablation). Measured on the shipped
    (template-dropout) weights: 0.836 here (n=16, 47 edges), 0.870 at n=32 with 48 edges
    (benchmarks/results/circuits.md); the previous weights gave 0.822 and 0.813."""
    model = mechinterp.load("zoo:toy-lm")
    task = mechinterp.tasks.load("ioi", model, n=16, seed=0)
    setup = setup_for(model, task, "corrupted")
    circuit = discover(model, task, "exact", "corrupted", setup=setup)
    n_edges = int(circuit.graph.real.sum())
    small = circuit.top_n(n_edges // 10)
    assert int(small.selected.sum()) <= 0.1 * n_edges
    assert float(faithfulness(model, setup, task.metric, small)[0]) >= 0.8


@pytest.mark.parametrize("method,ablation", [("eap", "mean"), ("eap-ig-inputs", "corrupted"), ("node", "zero")])
def test_batch_size_gives_the_one_batch_scores(toy_lm, method, ablation):
    """Chunked scoring is exact: the objective is a mean over prompts (chunks of 3, 3 and 1 prompts
    of different lengths; mean ablation keeps the whole task's mean), whether each chunk's caches
    are prepared in turn or a prepared setup is sliced."""
    from mechinterp.circuits import discover

    task = mechinterp.tasks.load("sentiment", toy_lm, n=7, seed=3)
    options = {"steps": 2} if method == "eap-ig-inputs" else {}
    whole = discover(toy_lm, task, method=method, ablation=ablation, **options)
    chunked = discover(toy_lm, task, method=method, ablation=ablation, batch_size=3, **options)
    sliced = discover(toy_lm, task, method=method, ablation=ablation, batch_size=3, setup=setup_for(toy_lm, task, ablation), **options)
    torch.testing.assert_close(chunked.scores, whole.scores, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(sliced.scores, whole.scores, atol=1e-5, rtol=1e-4)
    with pytest.raises(mechinterp.errors.MechinterpError, match="ACDC"):
        discover(toy_lm, task, method="acdc", batch_size=3)
