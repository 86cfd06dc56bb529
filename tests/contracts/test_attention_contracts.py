"""Contract for every attention method: results serialise and render; bad input raises a
MechinterpError; no hook is left on the model, after success or after an error; every entry
point runs on a bf16 and an fp16 model and gives the fp32 numbers up to that precision."""

from __future__ import annotations

import json

import pytest
import torch

from mechinterp.attention import (
    AttentionPatterns,
    HeadScores,
    attention_flow,
    attention_patterns,
    attention_rollout,
    external_references,
    gradient_rollout,
    head_scores,
)
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError

GOOD = ["w1 w2 w3 w1 w2", "w4 w5 w4"]
TOO_LONG = " ".join(["w1"] * 40)


def _raise_in_metric(logits):
    raise MechinterpError("failing target function")


# name -> (call on good input, list of bad calls)
METHODS = {
    "attention_patterns": (
        lambda m: attention_patterns(m, GOOD[0]),
        [lambda m: attention_patterns(m, []), lambda m: attention_patterns(m, TOO_LONG),
         lambda m: attention_patterns(m, GOOD[0], layers=[7]), lambda m: attention_patterns(m, "   ")],
    ),
    "head_scores": (
        lambda m: head_scores(m, GOOD),
        [lambda m: head_scores(m, []), lambda m: head_scores(m, [TOO_LONG]), lambda m: head_scores(m, GOOD, kinds=["x"]),
         lambda m: head_scores(m, n_probes=0)],
    ),
    "head_scores_sink": (
        lambda m: head_scores(m, GOOD, sink="first"),
        [lambda m: head_scores(m, GOOD, sink="bos"), lambda m: head_scores(m, GOOD, sink=4)],
    ),
    "attention_rollout": (
        lambda m: attention_rollout(m, GOOD, head_fusion="max"),
        [lambda m: attention_rollout(m, []), lambda m: attention_rollout(m, [TOO_LONG]),
         lambda m: attention_rollout(m, GOOD, head_fusion="sum"), lambda m: attention_rollout(m, GOOD, query=9),
         lambda m: attention_rollout(m, GOOD, start_layer=2)],
    ),
    "attention_rollout_sink": (
        lambda m: attention_rollout(m, GOOD, sink="first"),
        [lambda m: attention_rollout(m, GOOD, sink=-1), lambda m: attention_rollout(m, GOOD, sink=[0, 9]),
         lambda m: attention_rollout(m, GOOD, sink="first", sink_mode="drop")],
    ),
    "attention_flow": (
        lambda m: attention_flow(m, GOOD, queries=[-1]),
        [lambda m: attention_flow(m, []), lambda m: attention_flow(m, GOOD, max_positions=3),
         lambda m: attention_flow(m, GOOD, queries=[10])],
    ),
    "attention_flow_sink": (
        lambda m: attention_flow(m, GOOD, queries=[-1], sink="first", sink_mode="renormalise"),
        [lambda m: attention_flow(m, GOOD, queries=[-1], sink="last"), lambda m: attention_flow(m, GOOD, sink=True)],
    ),
    "gradient_rollout": (
        lambda m: gradient_rollout(m, GOOD, target="w2"),
        [lambda m: gradient_rollout(m, []), lambda m: gradient_rollout(m, [TOO_LONG]),
         lambda m: gradient_rollout(m, GOOD, target="w1 w2"), lambda m: gradient_rollout(m, GOOD, target=_raise_in_metric),
         lambda m: gradient_rollout(m, GOOD, target=torch.tensor([1, 2, 3]))],
    ),
    "gradient_rollout_sink": (
        lambda m: gradient_rollout(m, GOOD, target="w2", sink=[0, 1]),
        [lambda m: gradient_rollout(m, GOOD, sink=7)],
    ),
}


def _numbers(result):
    """The numbers a result reports, as one float32 vector (for the precision comparison)."""
    if isinstance(result, AttentionPatterns):
        return result.patterns.flatten()
    if isinstance(result, HeadScores):
        return torch.nan_to_num(result.scores.flatten(), nan=-1.0)
    return result.token_scores.flatten()


# How far a bf16/fp16 result may be from fp32: scores and maps are in [0, 1] (measured max
# deviation 0.0043 in bf16, 0.0005 in fp16); gradient rollout's relevance carries logit
# gradients, so it gets 3x that, relative to its largest entry (measured 1.0 % / 0.15 %).
TOLERANCE = {torch.bfloat16: 0.01, torch.float16: 0.002}


@pytest.fixture(scope="module", params=[torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def half_model(request, tiny_model):
    import copy

    return copy.deepcopy(tiny_model).to(request.param, print_details=False)


@pytest.mark.parametrize("name", list(METHODS))
def test_runs_in_half_precision_with_the_fp32_numbers(tiny_model, half_model, name):
    call = METHODS[name][0]
    full, half = call(tiny_model), call(half_model)
    assert_no_hooks(half_model)
    assert half.dtype == str(half_model.cfg.dtype).removeprefix("torch.") and full.dtype == "float32"
    a, b = _numbers(full), _numbers(half)
    assert b.dtype == torch.float32 and torch.isfinite(b).all()  # computed in float32 from the half patterns
    atol = TOLERANCE[half_model.cfg.dtype]
    if name.startswith("gradient_rollout"):
        torch.testing.assert_close(b, a, atol=3 * atol * float(a.abs().max()), rtol=0)
    else:
        torch.testing.assert_close(b, a, atol=atol, rtol=0)
    json.dumps(half.to_dict())


def test_half_precision_pattern_rows_pass_the_check():
    # bf16 rounding moves a row sum by up to eps/2 = 0.0039 (seen: 0.9988 on SmolLM2), beyond
    # the float32 tolerance of 1e-3 but inside the bf16 one; a NaN row (sum 0) still fails.
    from mechinterp.attention.inputs import check_rows, row_tolerance
    from mechinterp.errors import NonFiniteError

    gen = torch.Generator().manual_seed(0)
    rows = (torch.randn(1, 1, 64, 40, 40, generator=gen) * 3).softmax(-1)
    mask = torch.ones(1, 40, dtype=torch.long)
    half = rows.to(torch.bfloat16).float()
    assert (half.sum(-1) - 1).abs().max() > 1e-3
    with pytest.raises(NonFiniteError):
        check_rows(half, mask)
    check_rows(half, mask, atol=row_tolerance(torch.bfloat16))
    check_rows(rows.half().float(), mask, atol=row_tolerance(torch.float16))
    half[0, 0, 3, 7] = 0.0
    with pytest.raises(NonFiniteError, match="sums to 0"):
        check_rows(half, mask, atol=row_tolerance(torch.bfloat16))


@pytest.mark.parametrize("name", list(METHODS))
def test_good_input_gives_a_serialisable_result(tiny_model, name):
    result = METHODS[name][0](tiny_model)
    assert_no_hooks(tiny_model)
    assert isinstance(result, AbstractResult)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["type"] == type(result).__name__ and "method" in data and "parameters" in data
    back = type(result).from_dict(data)
    assert json.dumps(back.to_dict()) == json.dumps(data)
    html = result._repr_html_()
    assert html and external_references(html) == []
    assert result.plot() is not None
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize("name", list(METHODS))
def test_bad_input_raises_and_leaves_no_hooks(tiny_model, name):
    for i, bad in enumerate(METHODS[name][1]):
        with pytest.raises(MechinterpError) as err:
            bad(tiny_model)
        assert len(str(err.value)) > 20, (name, i, str(err.value))  # says what to do, not just "bad"
        assert_no_hooks(tiny_model)


def test_nan_weights_raise_nonfinite(tiny_model):
    from mechinterp.errors import NonFiniteError

    w = tiny_model.blocks[0].attn.W_Q
    saved = w.detach().clone()
    try:
        with torch.no_grad():
            w[0, 0, 0] = float("nan")
        for call in (lambda: attention_rollout(tiny_model, GOOD), lambda: head_scores(tiny_model, GOOD),
                     lambda: gradient_rollout(tiny_model, GOOD, target="w2")):
            with pytest.raises(NonFiniteError):
                call()
            assert_no_hooks(tiny_model)
    finally:
        with torch.no_grad():
            w.copy_(saved)


@pytest.fixture(scope="module")
def gqa_model(tiny_model):
    """A tiny Llama-style model: 4 query heads sharing 2 key/value heads, rotary, RMSNorm, gated MLP."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=2, d_model=32, n_heads=4, d_head=8, n_key_value_heads=2, d_mlp=64, n_ctx=16,
        d_vocab=tiny_model.cfg.d_vocab, act_fn="silu", gated_mlp=True, normalization_type="RMS",
        positional_embedding_type="rotary", rotary_dim=8, final_rms=True, seed=0, device="cpu",
    )
    torch.manual_seed(0)
    model = HookedTransformer(cfg, tokenizer=tiny_model.tokenizer)
    model.eval()
    return model


@pytest.mark.parametrize("name", list(METHODS))
def test_grouped_query_attention_model(gqa_model, name):
    result = METHODS[name][0](gqa_model)
    assert_no_hooks(gqa_model)
    numbers = _numbers(result)
    assert torch.isfinite(numbers[numbers != -1.0]).all()
    if isinstance(result, AttentionPatterns):  # one pattern per query head, rows summing to 1
        assert result.patterns.shape[:2] == (2, 4)
        torch.testing.assert_close(result.patterns.sum(-1), torch.ones(result.patterns.shape[:-1]))
    if isinstance(result, HeadScores):
        assert result.scores.shape[1:] == (2, 4)
