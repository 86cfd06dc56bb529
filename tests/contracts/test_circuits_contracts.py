"""Contract over every registered circuit scorer and public entry point: good input, bad input, no hooks left,
config restored; bf16 / fp16 models (also with grouped-query attention) run every one without a raw torch error."""

from __future__ import annotations

import pytest
import torch

import mechinterp
import copy
from types import SimpleNamespace

from mechinterp.circuits import (
    SCORERS,
    acdc,
    circuit_report,
    compare_to_reference,
    discover,
    eap_ig_activations_scores,
    eap_ig_inputs_scores,
    eap_scores,
    exact_scores,
    faithfulness,
    faithfulness_curve,
    mask_gradient,
    node_attribution,
    node_patching_effects,
    patch_edges,
    prepare_edge_patching,
    setup_for,
)
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import EmptyInputError, MechinterpError, NonFiniteError, PromptTooLongError, ShapeMismatchError

FAST = {"acdc": {"thresholds": [0.01, 0.1]}, "eap-ig-inputs": {"steps": 2}, "eap-ig-activations": {"steps": 2}}


@pytest.fixture(scope="module")
def task(tiny_model):
    return mechinterp.tasks.load("induction", tiny_model, n=3, seed=0, seq_len=4)


def _clean(model):
    assert_no_hooks(model)
    assert not model.cfg.use_split_qkv_input and not model.cfg.use_hook_mlp_in
    assert not model.cfg.ungroup_grouped_query_attention


@pytest.mark.parametrize("method", sorted(SCORERS))
def test_good_input(tiny_model, task, method):
    c = discover(tiny_model, task, method, "corrupted", **FAST.get(method, {}))
    g = c.graph
    assert c.scores.shape == g.real.shape and torch.isfinite(c.scores).all() and (c.scores[~g.real] == 0).all()
    assert c.method == method
    _clean(tiny_model)


class _BadTask:
    def __init__(self, task, **changes):
        self.__dict__.update(task.__dict__)
        self.__dict__.update(changes)
        self.name = "bad"

    def metric(self, logits):
        return self._metric(logits) if "_metric" in self.__dict__ else self.__dict__["metric_fn"](logits)


@pytest.mark.parametrize("method", sorted(SCORERS))
def test_bad_input_raises_and_leaves_no_hooks(tiny_model, task, method):
    opts = FAST.get(method, {})
    with pytest.raises(ShapeMismatchError):
        discover(tiny_model, _BadTask(task, corrupted_tokens=task.corrupted_tokens[:, :-1]), method, **opts)
    with pytest.raises(PromptTooLongError):
        long = torch.ones(2, 40, dtype=torch.long)
        discover(tiny_model, _BadTask(task, clean_tokens=long, corrupted_tokens=long), method, **opts)
    with pytest.raises(EmptyInputError):
        empty = torch.zeros(0, 5, dtype=torch.long)
        discover(tiny_model, _BadTask(task, clean_tokens=empty, corrupted_tokens=empty), method, **opts)
    nan_task = _BadTask(task, _metric=lambda logits: logits[:, -1, 0] * float("nan"))
    with pytest.raises(MechinterpError):  # NonFiniteError from gradients, undefined faithfulness / NaN scores otherwise
        discover(tiny_model, nan_task, method, **{**opts, **({"distance": "metric"} if method == "acdc" else {})})
    with pytest.raises(MechinterpError, match="does not take"):
        discover(tiny_model, task, method, bogus=1)
    _clean(tiny_model)


def test_unknown_method_ablation_and_bad_masks(tiny_model, task):
    with pytest.raises(MechinterpError, match="Unknown circuit method"):
        discover(tiny_model, task, "magic")
    with pytest.raises(MechinterpError, match="Unknown ablation"):
        discover(tiny_model, task, "eap", "shuffle")
    with pytest.raises(MechinterpError):
        discover(tiny_model, None, "eap")
    setup = setup_for(tiny_model, task, "zero")
    with pytest.raises(NonFiniteError):
        patch_edges(tiny_model, setup, torch.full(setup.graph.real.shape, float("inf")))
    with pytest.raises(MechinterpError, match="faithfulness is undefined"):
        faithfulness(tiny_model, setup, lambda logits: logits[:, 0, 0] * 0, setup.graph.real)
    with pytest.raises(MechinterpError, match="Resample"):
        prepare_edge_patching(tiny_model, task.clean_tokens[:1], ablation="resample")
    _clean(tiny_model)


# ----- precision: bf16 / fp16 models, with and without grouped-query attention ------------------------------------


def _tiny_gqa():
    """2-layer random Llama-style model: rotary, RMSNorm, gated SiLU MLP, 2 key/value heads for 4 heads."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=48, act_fn="silu",
        normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8, gated_mlp=True,
        n_key_value_heads=2, seed=0, device="cpu",
    )
    torch.manual_seed(0)
    return HookedTransformer(cfg).eval()


@pytest.fixture(scope="module", params=["bf16", "fp16", "bf16-gqa", "fp16-gqa"])
def low(request, tiny_model, task):
    """(model in low precision, task): the word-tokenizer model on induction, or the GQA model on random tokens."""
    dtype = torch.bfloat16 if request.param.startswith("bf16") else torch.float16
    if request.param.endswith("gqa"):
        gen = torch.Generator().manual_seed(0)
        low_task = SimpleNamespace(
            name="random", clean_tokens=torch.randint(3, 45, (3, 6), generator=gen),
            corrupted_tokens=torch.randint(3, 45, (3, 6), generator=gen), clean_prompts=[], corrupted_prompts=[],
            metric=lambda logits: logits[:, -1, 5] - logits[:, -1, 7],
        )
        return _tiny_gqa().to(dtype, print_details=False), low_task
    return copy.deepcopy(tiny_model).to(dtype, print_details=False), task


@pytest.mark.parametrize("method", sorted(SCORERS))
def test_every_scorer_runs_in_low_precision(low, method):
    model, low_task = low
    c = discover(model, low_task, method, "corrupted", **FAST.get(method, {}))
    assert c.scores.dtype == torch.float32 and torch.isfinite(c.scores).all() and c.scores.abs().sum() > 0
    assert c.info["model_dtype"] == str(model.cfg.dtype).removeprefix("torch.") and c.info["score_dtype"] == "float32"
    assert (c.scores[~c.graph.real] == 0).all()
    _clean(model)


ENTRY_POINTS = {
    "prepare_edge_patching": lambda m, t, s: prepare_edge_patching(m, t.clean_tokens, t.corrupted_tokens, ablation="mean").patched,
    "patch_edges": lambda m, t, s: patch_edges(m, s, s.graph.real.float()[None].repeat(2, 1, 1) * 0.5),
    "eap_scores": lambda m, t, s: eap_scores(m, s, t.metric),
    "eap_ig_inputs_scores": lambda m, t, s: eap_ig_inputs_scores(m, s, t.metric, steps=2),
    "eap_ig_activations_scores": lambda m, t, s: eap_ig_activations_scores(m, s, t.metric, steps=2),
    "mask_gradient": lambda m, t, s: mask_gradient(m, s, t.metric, at=0.5),
    "node_attribution": lambda m, t, s: node_attribution(m, s, t.metric),
    "exact_scores": lambda m, t, s: exact_scores(m, s, t.metric, chunk=64),
    "acdc": lambda m, t, s: acdc(m, s, t.metric, 1e-3)[0].float(),
    "faithfulness": lambda m, t, s: faithfulness(m, s, t.metric, s.graph.real),
    "faithfulness_curve": lambda m, t, s: torch.tensor(
        faithfulness_curve(m, s, t.metric, discover(m, t, "eap", setup=s), fractions=(0.1, 1.0)).faithfulness),
    "node_patching_effects": lambda m, t, s: torch.tensor(list(node_patching_effects(m, s, t.metric).values())),
    "circuit_report": lambda m, t, s: torch.tensor([len(circuit_report(m, t, discover(m, t, "eap", setup=s).top_n(6), setup=s))]),
    "compare_to_reference": lambda m, t, s: torch.tensor(
        compare_to_reference(discover(m, t, "eap", setup=s), [("embed", "logits")])["auc"]),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_every_entry_point_runs_in_low_precision(low, entry):
    model, low_task = low
    setup = setup_for(model, low_task)
    out = ENTRY_POINTS[entry](model, low_task, setup)
    assert torch.isfinite(out.float()).all()
    _clean(model)


def test_a_module_cast_that_leaves_cfg_dtype_behind_runs_as_model_to(tiny_model, task):
    """model.bfloat16() (a torch cast: cfg.dtype stays float32) runs as model.to(torch.bfloat16) would, for every
    scorer (the one precision rule of every family, see mechinterp.core.validation); cfg.dtype is restored."""
    cast = copy.deepcopy(tiny_model).bfloat16()
    ref = copy.deepcopy(tiny_model).to(torch.bfloat16, print_details=False)
    for method in sorted(SCORERS):
        got = discover(cast, task, method, **FAST.get(method, {}))
        want = discover(ref, task, method, **FAST.get(method, {}))
        torch.testing.assert_close(got.scores, want.scores)
        assert got.info["model_dtype"] == "bfloat16"
    assert cast.cfg.dtype == torch.float32
    _clean(cast)
