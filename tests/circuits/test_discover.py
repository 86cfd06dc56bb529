"""The bars: every method recovers the compiled tracr circuits and the attn-only-2l induction circuit."""

from __future__ import annotations

import pytest

import mechinterp
from mechinterp.circuits import SCORERS, compare_to_reference, discover, faithfulness
from mechinterp.errors import MechinterpError

EDGE_METHODS = [m for m in SCORERS if m != "node"]
FAST = {"acdc": {"distance": "l2", "thresholds": [1e-3, 1e-2, 0.1]}}


@pytest.mark.parametrize("method", EDGE_METHODS)
def test_frac_prevs_every_method_auc_1(frac, method):
    model, task, setup = frac
    circuit = discover(model, task, method, "zero", setup=setup, **FAST.get(method, {}))
    assert compare_to_reference(circuit, task.ground_truth.circuit)["auc"] == 1.0
    assert circuit.top_n(5).nodes() == ["embed", "MLP0", "L1H0", "logits"]


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


ATTN = "attn-only-2l" in mechinterp.zoo.names()


@pytest.fixture(scope="module")
def induction():
    from mechinterp.circuits import setup_for

    model = mechinterp.load("zoo:attn-only-2l")
    task = mechinterp.tasks.load("induction", model, n=12, seed=0)
    # Mean ablation: the task's corrupted prompts keep the first copy, so the previous-token
    # heads' key-side edges carry identical values and no corrupted patch can see them.
    return model, task, setup_for(model, task, "mean")


@pytest.mark.skipif(not ATTN, reason="zoo:attn-only-2l is not trained yet")
def test_induction_exact_auc_at_least_095(induction):
    model, task, setup = induction
    circuit = discover(model, task, "exact", "mean", setup=setup)
    assert compare_to_reference(circuit, task.ground_truth.circuit)["auc"] >= 0.95


@pytest.mark.skipif(not ATTN, reason="zoo:attn-only-2l is not trained yet")
@pytest.mark.xfail(strict=True, reason="known gap: greedy ACDC drops the first-tested of 4 redundant induction heads")
def test_induction_acdc_auc_at_least_095(induction):
    model, task, setup = induction
    circuit = discover(model, task, "acdc", "mean", setup=setup, distance="kl", thresholds=[0.002, 0.02, 0.2])
    assert compare_to_reference(circuit, task.ground_truth.circuit)["auc"] >= 0.95


@pytest.mark.skipif(not ATTN, reason="zoo:attn-only-2l is not trained yet")
@pytest.mark.xfail(strict=True, reason="known gap: the induction heads' saturated softmax hides K-composition edges from gradients")
@pytest.mark.parametrize("method", ["eap", "eap-ig-inputs", "eap-ig-activations"])
def test_induction_gradient_methods_auc_at_least_095(induction, method):
    model, task, setup = induction
    circuit = discover(model, task, method, "mean", setup=setup)
    assert compare_to_reference(circuit, task.ground_truth.circuit)["auc"] >= 0.95
