"""Bad inputs that used to give silent wrong answers in circuits (issue 16, items 2 and 7).

* every scorer and evaluator rejects a metric whose output is not ``[batch]`` with one message;
* ACDC rejects NaN / infinite / non-numeric thresholds instead of keeping every edge;
* faithfulness with a NaN metric raises a NonFiniteError naming the metric;
* mean ablation over prompts of different lengths averages only the real (non-pad) tokens.
"""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.circuits import (
    SCORERS,
    acdc,
    acdc_scores,
    discover,
    eap_scores,
    exact_scores,
    faithfulness,
    metrics_of_masks,
    prepare_edge_patching,
    sender_outputs,
    setup_for,
)
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import MechinterpError, NonFiniteError

FAST = {"acdc": {"thresholds": [0.01, 0.1]}, "eap-ig-inputs": {"steps": 2}, "eap-ig-activations": {"steps": 2}}


@pytest.fixture(scope="module")
def task(tiny_model):
    return mechinterp.tasks.load("induction", tiny_model, n=3, seed=0, seq_len=4)


class _WithMetric:
    """``task`` with its metric replaced."""

    def __init__(self, task, metric):
        self.__dict__.update(task.__dict__)
        self._metric = metric
        self.name = "bad-metric"

    def metric(self, logits):
        return self._metric(logits)


BAD_SHAPES = {
    "batch-by-3": lambda logits: logits[:, -1, :3],
    "scalar": lambda logits: logits[:, -1, 5].mean(),
    "wrong-batch": lambda logits: logits[:1, -1, 5],
}


# ----- item 7: one metric-shape check for every scorer ------------------------------------------------------------


@pytest.mark.parametrize("shape", sorted(BAD_SHAPES))
@pytest.mark.parametrize("method", sorted(SCORERS))
def test_every_scorer_rejects_a_metric_that_is_not_one_value_per_prompt(tiny_model, task, method, shape):
    bad = _WithMetric(task, BAD_SHAPES[shape])
    with pytest.raises(MechinterpError, match=r"metric must map logits \[batch, pos, d_vocab\] to \[batch\]"):
        discover(tiny_model, bad, method, **FAST.get(method, {}))
    assert_no_hooks(tiny_model)


def test_evaluators_reject_a_batch_by_3_metric_like_eap(tiny_setup):
    model, setup, _ = tiny_setup
    bad = BAD_SHAPES["batch-by-3"]
    messages = []
    for call in (
        lambda: eap_scores(model, setup, bad),
        lambda: exact_scores(model, setup, bad),
        lambda: faithfulness(model, setup, bad, setup.graph.real),
        lambda: metrics_of_masks(model, setup, bad, torch.zeros(setup.graph.real.shape)),
        lambda: acdc(model, setup, bad, 0.1, "metric"),
    ):
        with pytest.raises(MechinterpError) as err:
            call()
        messages.append(str(err.value))
    assert len(set(messages)) == 1, messages
    assert "(3, 3)" in messages[0]


# ----- item 7: ACDC thresholds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("thresholds", [[float("nan")], [0.1, float("nan")], [float("inf")], [-0.1], [], ["a"], [None]])
def test_acdc_rejects_invalid_thresholds(tiny_setup, thresholds):
    model, setup, metric = tiny_setup
    with pytest.raises(MechinterpError, match="thresholds"):
        acdc_scores(model, setup, metric, thresholds=thresholds)


def test_acdc_nan_threshold_through_discover_raises(tiny_model, task):
    with pytest.raises(MechinterpError, match="thresholds"):
        discover(tiny_model, task, "acdc", thresholds=[float("nan")])
    assert_no_hooks(tiny_model)


@pytest.mark.parametrize("tau", [float("nan"), float("inf"), -1.0, "x"])
def test_single_acdc_run_rejects_invalid_threshold(tiny_setup, tau):
    model, setup, metric = tiny_setup
    with pytest.raises(MechinterpError, match="threshold"):
        acdc(model, setup, metric, tau)


# ----- item 7: faithfulness with a NaN metric --------------------------------------------------------------------


def test_faithfulness_with_a_nan_metric_raises_naming_the_metric(tiny_setup):
    model, setup, _ = tiny_setup

    def nan_metric(logits):
        return logits[:, -1, 5] * float("nan")

    with pytest.raises(NonFiniteError, match="metric") as err:
        faithfulness(model, setup, nan_metric, setup.graph.real)
    assert "nan_metric" in str(err.value)
    with pytest.raises(NonFiniteError, match="metric"):
        exact_scores(model, setup, nan_metric)


# ----- item 2: mean ablation ignores padding ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ragged(tiny_model):
    """A task whose prompts have 5, 3 and 2 tokens (right-padded with <pad>)."""
    return mechinterp.tasks.from_pairs(
        tiny_model,
        clean=["w3 w4 w5 w6", "w7 w8", "w9"],
        corrupted=["w10 w11 w12 w13", "w14 w15", "w16"],
        answers=["w20", "w21", "w22"],
        wrong_answers=["w23", "w24", "w25"],
    )


def _mean_by_hand(model, graph, tokens, lengths):
    """Per position, the mean sender outputs over the prompts that have a real token there (each run unpadded)."""
    outs = [sender_outputs(model, graph, tokens[i : i + 1, : int(n)])[0] for i, n in enumerate(lengths)]
    width = tokens.shape[1]
    mean = torch.zeros(width, *outs[0].shape[1:])
    for p in range(width):
        rows = [o[p] for o in outs if p < o.shape[0]]
        mean[p] = torch.stack(rows).mean(0)
    return mean


def test_mean_ablation_averages_only_real_tokens(tiny_model, ragged):
    assert len(set(ragged.lengths.tolist())) == 3  # really of different lengths, really padded
    setup = setup_for(tiny_model, ragged, "mean")
    want = _mean_by_hand(tiny_model, setup.graph, ragged.corrupted_tokens, ragged.lengths)
    assert setup.patched.shape == (1, *want.shape)
    assert torch.allclose(setup.patched[0], want, atol=1e-5)
    # the same through prepare_edge_patching with the lengths given explicitly
    direct = prepare_edge_patching(tiny_model, ragged.clean_tokens, ragged.corrupted_tokens, ablation="mean", lengths=ragged.lengths)
    assert torch.allclose(direct.patched[0], want, atol=1e-5)
    # the old behaviour (pads averaged in) differs at the positions where only some prompts are real
    padded = sender_outputs(tiny_model, setup.graph, ragged.corrupted_tokens).mean(0)
    assert not torch.allclose(padded[-1], want[-1], atol=1e-3)


def test_mean_ablation_lengths_are_checked(tiny_model, ragged):
    clean, corr = ragged.clean_tokens, ragged.corrupted_tokens
    for bad in ([5, 3], [5, 3, 0], [5, 3, 9], [5.5, 3, 2]):
        with pytest.raises(MechinterpError, match="lengths"):
            prepare_edge_patching(tiny_model, clean, corr, ablation="mean", lengths=torch.tensor(bad))
