"""Every result class: save -> load gives equal values (NaN kept, tensors exact), and both renderings work.

Classes are discovered by walking the subclasses of ``AbstractResult`` after importing every
family; a class with no builder below fails ``test_every_result_class_has_a_builder``, so a
new result class must be added here. Builders put a NaN and an infinity into a tensor and a
float field wherever the class has one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings

import matplotlib
import pytest
import torch

import mechinterp.attention
import mechinterp.attribution
import mechinterp.circuits
import mechinterp.patching
import mechinterp.probes  # noqa: F401  (imported so every result class is defined)
from mechinterp.core.results import AbstractResult, ResultFormatWarning, result_classes

matplotlib.use("Agg")

NAN, INF = float("nan"), float("inf")


def _patch_result(values=None, method="activation"):
    from mechinterp.patching import PatchResult

    values = torch.tensor([[0.5, NAN, -1.0], [INF, 0.0, 0.25]]) if values is None else values
    return PatchResult(values=values, raw=values * 2, dims=("layer", "pos"), labels={"layer": ["L0", "L1"], "pos": ["0:a", "1:b", "2:c"]},
                       site="resid_pre", method=method, direction="denoising", ablation=None, metric="logit_diff",
                       normalised=True, base_value=0.1, target_value=NAN, tokens=["a", "b", "c"])


def _graph():
    from mechinterp.circuits import Graph

    return Graph.build(2, 2, True)


def _circuit():
    from mechinterp.circuits import Circuit

    g = _graph()
    scores = torch.linspace(-1, 1, g.real.numel()).view_as(g.real) * g.real
    return Circuit(graph=g, scores=scores, selected=(scores.abs() > 0.5) & g.real, method="eap", ablation="zero",
                   task="t", model="m", info={"sweep": [{"threshold": 0.1, "kept": [["embed", "logits"]]}], "gap": NAN})


def _acdc_run():
    from mechinterp.circuits import AcdcRun

    g = _graph()
    kept = torch.zeros_like(g.real)
    kept[0] = g.real[0]
    edges = [[g.senders[r], g.receivers[c]] for r, c in torch.nonzero(kept).tolist()]
    return AcdcRun(kept=kept, edges=edges, threshold=0.1, distance=NAN, distance_name="kl", passes=3)


BUILDERS = {
    "TokenAttribution": lambda: __import__("mechinterp.attribution", fromlist=["TokenAttribution"]).TokenAttribution(
        tokens=["<bos>", "a", "b"], scores=torch.tensor([[0.0, NAN, 2.0]]), targets=["logit('c')"], method="lime",
        options={"n_samples": 10, "alpha": 1e-3}, metadata={"r2": [0.9], "delta": INF}),
    "Faithfulness": lambda: __import__("mechinterp.attribution", fromlist=["Faithfulness"]).Faithfulness(
        method="occlusion", fractions=[0.0, 0.5, 1.0], deletion=[1.0, NAN, 0.0], insertion=[0.0, 0.5, 1.0],
        deletion_auc=0.4, insertion_auc=-INF, comprehensiveness=0.3, sufficiency=NAN, order=[1, 0]),
    "IGConvergence": lambda: mechinterp.attribution.IGConvergence(
        steps=[2, 8], relative_deltas=[0.5, NAN], tolerance=0.01, shrinking=False, converged=False, options={"baseline": "zero"}),
    "AttentionMap": lambda: mechinterp.attention.AttentionMap(
        method="rollout", str_tokens=[["a", "b"], ["c"]], matrix=torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[1.0, 0.0], [0.0, 1.0]]]),
        token_scores=torch.tensor([[0.5, 0.5], [1.0, 0.0]]), query_positions=torch.tensor([1, 0]), lengths=torch.tensor([2, 1]),
        parameters={"head_fusion": "mean"}, sink_positions=[0], sink_mode="self", sink_share=torch.tensor([0.5, NAN])),
    "HeadScores": lambda: mechinterp.attention.HeadScores(
        scores=torch.tensor([[[0.1, NAN], [0.3, 0.4]]]), kinds=["previous_token"], method="head_scores",
        parameters={"n": 4}, sink_positions=[0], first_token_mass=NAN),
    "AttentionPatterns": lambda: mechinterp.attention.AttentionPatterns(
        str_tokens=["a", "b"], patterns=torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]]), layers=[1], method="patterns",
        parameters={"layers": [1]}),
    "PatchResult": _patch_result,
    "AttributionComparison": lambda: mechinterp.patching.AttributionComparison(
        exact=_patch_result(), approx=_patch_result(torch.tensor([[0.4, 0.1, -0.9], [0.7, 0.0, 0.2]]), method="attribution"),
        pearson=0.9, spearman=NAN, max_abs_error=INF, top_k_overlap=0.5),
    "Circuit": _circuit,
    "AcdcRun": lambda: _acdc_run(),
    "FaithfulnessCurve": lambda: mechinterp.circuits.FaithfulnessCurve(
        fractions=[0.1, 0.5, 1.0], n_edges=[1, 5, 10], faithfulness=[0.2, NAN, 1.0], cpr=0.5, cmd=NAN, method="eap"),
    "CircuitFaithfulness": lambda: mechinterp.circuits.CircuitFaithfulness(
        values=torch.tensor([1.0, NAN, 0.25]), full=2.0, empty=-INF, n_edges=[10, 0, 3], metric="logit_diff"),
    "ReferenceComparison": lambda: mechinterp.circuits.ReferenceComparison(
        auc=0.75, precision=NAN, recall=1.0, f1=0.5, n_selected=0, n_reference=2, auc_pessimistic=0.5),
    "NodeEffects": lambda: mechinterp.circuits.NodeEffects(
        effects={"embed": 0.0, "L0H0": -1.0, "L0H1": NAN, "MLP0": 0.5, "L1H0": 0.1, "L1H1": 0.2, "MLP1": INF},
        n_layers=2, n_heads=2, clean=1.0, patched=0.0),
    "SweepResult": lambda: mechinterp.probes.SweepResult(
        probe="logistic", metric="accuracy", site="resid_post", hook_names=["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"],
        layers=[0, 1], positions=["last"], score=[[0.9], [NAN]], ci_low=[[0.8], [0.7]], ci_high=[[1.0], [0.95]],
        control=[[0.5], [0.5]], selectivity=[[0.4], [NAN]], random=[[0.6], [0.6]], random_std=[[0.1], [0.1]],
        majority=0.5, chance=0.5, n_examples=40, n_train=160, split="holdout", classes=["neg", "pos"],
        random_whitened=[[0.5], [0.52]], random_whitened_std=[[0.05], [0.05]]),
    "CausalResult": lambda: mechinterp.probes.CausalResult(
        hook_name="blocks.1.hook_resid_post", positions="last", metric_clean=1.0, metric_projected=0.2, flip_projected=0.4,
        metric_random=NAN, flip_random=0.0, scales=[-1.0, 1.0], metric_steered=[0.5, INF], flip_steered=[0.1, 0.9], n_prompts=8),
}

CLASSES = {cls.__name__: cls for cls in result_classes() if cls.__module__.startswith("mechinterp.")}


def test_every_result_class_has_a_builder():
    missing = sorted(set(CLASSES) - set(BUILDERS))
    assert not missing, f"add a builder to BUILDERS in {__file__} for: {missing}"
    assert len(CLASSES) >= 15


def assert_same(a, b, where="result"):
    """Equal values, NaN equal to NaN, tensors equal in dtype, shape and every element."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(a, AbstractResult) or dataclasses.is_dataclass(a):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b and type(a) is type(b), f"{where}: {a!r} != {b!r}"


def _strict_json(text):
    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name} in the saved file")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_save_load_render(name, tmp_path):
    import matplotlib.pyplot as plt

    result = BUILDERS[name]()
    assert type(result) is CLASSES[name]
    path = result.save(tmp_path / f"{name}.json")
    data = _strict_json(path.read_text())
    assert data["type"] == name
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResultFormatWarning)
        back = CLASSES[name].load(path)
        generic = AbstractResult.load(path)  # dispatches on the type tag
    assert_same(result, back)
    assert_same(result, generic)
    for rendered in (back.to_html(), back._repr_html_()):
        assert isinstance(rendered, str) and rendered.strip()
        assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", rendered), "HTML must be offline"
    html_path = back.save(tmp_path / f"{name}.html")
    assert html_path.read_text().strip()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "atomic save left a temporary file"
    plt.close("all")


def test_nested_results_are_rebuilt_and_render():
    """Issue #16 item 11: AttributionComparison.load gave ``exact`` as a plain dict and to_html raised."""
    comp = BUILDERS["AttributionComparison"]()
    back = type(comp).from_dict(json.loads(json.dumps(comp.to_dict())))
    assert type(back.exact) is type(comp.exact) and back.exact.dims == ("layer", "pos")
    assert math.isnan(back.spearman) and back.max_abs_error == INF and math.isnan(back.exact.target_value)
    assert back.to_html()


def test_legacy_string_floats_are_restored():
    """Files written before non-finite floats were tagged hold them as strings in float fields."""
    from mechinterp.circuits import FaithfulnessCurve

    data = {"type": "FaithfulnessCurve", "fractions": [0.5, 1.0], "n_edges": [1, 2], "faithfulness": ["nan", 1.0],
            "cpr": "inf", "cmd": "-inf", "method": "nan"}
    back = FaithfulnessCurve.from_dict(data)
    assert math.isnan(back.faithfulness[0]) and back.cpr == INF and back.cmd == -INF
    assert back.method == "nan"  # a str field keeps its text


def test_unknown_keys_warn_and_name_the_keys():
    from mechinterp.circuits import FaithfulnessCurve

    data = {**BUILDERS["FaithfulnessCurve"]().to_dict(), "colour": "red", "extra_field": 1}
    with pytest.warns(ResultFormatWarning, match="'colour', 'extra_field'"):
        FaithfulnessCurve.from_dict(data)
    data = {**_circuit().to_dict(), "colour": "red"}
    with pytest.warns(ResultFormatWarning, match="colour"):
        mechinterp.circuits.Circuit.from_dict(data)


def test_wrong_class_and_missing_fields_are_mechinterp_errors(tmp_path):
    from mechinterp.circuits import FaithfulnessCurve
    from mechinterp.errors import MechinterpError
    from mechinterp.patching import PatchResult

    path = BUILDERS["FaithfulnessCurve"]().save(tmp_path / "c.json")
    with pytest.raises(MechinterpError, match="FaithfulnessCurve"):
        PatchResult.load(path)
    with pytest.raises(MechinterpError, match="cpr"):
        FaithfulnessCurve.from_dict({"type": "FaithfulnessCurve", "fractions": [1.0], "n_edges": [1], "faithfulness": [1.0], "cmd": 0.0})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(MechinterpError, match="bad.json"):
        FaithfulnessCurve.load(tmp_path / "bad.json")
    with pytest.raises(MechinterpError, match="nope.json"):
        FaithfulnessCurve.load(tmp_path / "nope.json")


def test_a_plain_dict_with_a_type_key_stays_a_dict():
    from mechinterp.attribution import TokenAttribution

    res = TokenAttribution(tokens=["a"], scores=torch.ones(1, 1), targets=["t"], method="m",
                           metadata={"note": {"type": "PatchResult", "comment": "not a result"}})
    back = TokenAttribution.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back.metadata["note"] == {"type": "PatchResult", "comment": "not a result"}


def test_circuit_from_dict_checks_its_input(tmp_path):
    from mechinterp.circuits import Circuit
    from mechinterp.errors import MechinterpError

    data = _circuit().to_dict()
    with pytest.raises(MechinterpError, match="'graph'"):
        Circuit.from_dict({k: v for k, v in data.items() if k != "graph"})
    with pytest.raises(MechinterpError, match="PatchResult"):
        Circuit.load(_patch_result().save(tmp_path / "p.json"))
