"""Contract over every patching method: good input works, bad input raises a clear error, no hooks left."""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import MechinterpError, NonFiniteError, ShapeMismatchError, UnknownSiteError
from mechinterp.patching import (
    activation_patch,
    attribution_patch,
    causal_trace,
    compare_with_exact,
    patch_block_every,
    patch_heads_every,
    path_patch,
)

GEN = torch.Generator().manual_seed(0)
CLEAN = torch.randint(3, 48, (2, 6), generator=GEN)
CORRUPTED = CLEAN.clone()
CORRUPTED[:, 2] = (CORRUPTED[:, 2] + 7) % 45 + 3


def good_metric(logits):
    return logits[:, -1, 4] - logits[:, -1, 5]


def _calls(**kw):
    """Every public method, called on (clean, corrupted, metric) with extra keyword arguments."""
    return {
        "activation_patch": lambda c, x, m: activation_patch(MODEL, c, x, m, site=kw.get("site", "resid_pre")),
        "activation_patch_head": lambda c, x, m: activation_patch(MODEL, c, x, m, site=kw.get("site", "z"), by="head"),
        "ablation": lambda c, x, m: activation_patch(MODEL, c, x, m, site=kw.get("site", "attn_out"), ablation="mean"),
        "block_every": lambda c, x, m: patch_block_every(MODEL, c, x, m),
        "heads_every": lambda c, x, m: patch_heads_every(MODEL, c, x, m),
        "path_patch": lambda c, x, m: path_patch(MODEL, c, x, m, receivers=kw.get("receivers", "resid_final")),
        "causal_trace": lambda c, x, m: causal_trace(MODEL, c, [1], m, n_samples=2, kind=kw.get("kind", "resid")),
        "attribution_patch": lambda c, x, m: attribution_patch(MODEL, c, x, m, sites=kw.get("site", "resid_pre")),
        "attribution_ig": lambda c, x, m: attribution_patch(MODEL, c, x, m, sites=kw.get("site", "z"), ig_steps=2),
        "compare_with_exact": lambda c, x, m: compare_with_exact(MODEL, c, x, m, site=kw.get("site", "mlp_out")),
    }


METHODS = sorted(_calls())
MODEL = None


@pytest.fixture(autouse=True)
def _model(tiny_model):
    global MODEL
    MODEL = tiny_model
    yield
    assert_no_hooks(tiny_model)
    assert not tiny_model.cfg.use_attn_result


@pytest.mark.parametrize("name", METHODS)
def test_good_input(name):
    result = _calls()[name](CLEAN, CORRUPTED, good_metric)
    results = result.values() if isinstance(result, dict) else [result]
    for r in results:
        tensor = r.exact.values if hasattr(r, "exact") else r.values
        assert torch.isfinite(tensor).all()
        assert r.to_dict()["type"]
        assert "<" in r.to_html()


CASES = ["different_lengths", "different_batch", "non_scalar_metric", "scalar_metric", "nan_metric", "raising_metric"]
# causal tracing has no corrupted prompts, so the two clean/corrupted mismatches do not apply to it
BAD = [(n, c) for n in METHODS for c in CASES if not (n == "causal_trace" and c.startswith("different"))]


@pytest.mark.parametrize("name,case", BAD)
def test_bad_input_raises_and_leaves_no_hooks(name, case):
    clean, corrupted, metric, error = CLEAN, CORRUPTED, good_metric, MechinterpError
    if case == "different_lengths":
        corrupted, error = CORRUPTED[:, :5], ShapeMismatchError
    elif case == "different_batch":
        corrupted, error = CORRUPTED[:1], ShapeMismatchError
    elif case == "non_scalar_metric":
        metric, error = (lambda logits: logits[:, -1, :3]), ShapeMismatchError
    elif case == "scalar_metric":
        metric, error = (lambda logits: good_metric(logits).mean()), ShapeMismatchError
    elif case == "nan_metric":
        metric, error = (lambda logits: good_metric(logits) * float("nan")), NonFiniteError
    else:
        calls = {"n": 0}

        def metric(logits):  # the first passes succeed, then the method's own pass fails
            calls["n"] += 1
            if calls["n"] > 3:
                raise MechinterpError("metric failed")
            return good_metric(logits)

    with pytest.raises(error):
        _calls()[name](clean, corrupted, metric)


@pytest.mark.parametrize("name", ["activation_patch", "ablation", "attribution_patch", "compare_with_exact"])
def test_unknown_site(name):
    with pytest.raises(UnknownSiteError, match="Unknown patching site"):
        _calls(site="resid_middle")[name](CLEAN, CORRUPTED, good_metric)


def test_unknown_receiver_and_trace_kind():
    with pytest.raises(UnknownSiteError):
        _calls(receivers=[(5, 0, "q")])["path_patch"](CLEAN, CORRUPTED, good_metric)
    with pytest.raises(MechinterpError):
        _calls(kind="embeddings")["causal_trace"](CLEAN, CORRUPTED, good_metric)


def test_other_bad_arguments(tiny_model):
    with pytest.raises(MechinterpError):
        activation_patch(tiny_model, CLEAN, CORRUPTED, good_metric, by="neuron")
    with pytest.raises(MechinterpError):
        activation_patch(tiny_model, CLEAN, CORRUPTED, good_metric, direction="sideways")
    with pytest.raises(MechinterpError):
        activation_patch(tiny_model, CLEAN, None, good_metric)  # no corrupted prompts and no ablation
    with pytest.raises(MechinterpError):
        activation_patch(tiny_model, CLEAN, CORRUPTED, None)  # no metric
    with pytest.raises(MechinterpError):
        activation_patch(tiny_model, CLEAN, CORRUPTED, "logit_diff")  # named metric without answers
    with pytest.raises(NonFiniteError):
        activation_patch(tiny_model, CLEAN, CLEAN, good_metric)  # corruption changes nothing: cannot normalise
    with pytest.raises(MechinterpError):
        activation_patch(tiny_model, CLEAN, CORRUPTED, good_metric, layers=[7])
    with pytest.raises(ShapeMismatchError):
        activation_patch(tiny_model, ["w1 w2 w3"], ["w1 w2"], "kl")
    assert_no_hooks(tiny_model)


# --- reduced precision -------------------------------------------------------------------
# Every method on a bf16 model (model.to(torch.bfloat16): TL's cfg.dtype follows) and on an
# fp16 one cast with the plain nn.Module model.half() (TL's cfg.dtype stays float32, and TL's
# own forward would fail inside a matmul): results are float32, finite, close to the float32
# model's, and the model is left as it was.

LOW = {"bf16": (torch.bfloat16, 0.1), "half()": (torch.float16, 0.02)}


@pytest.fixture(scope="module")
def low_models(tiny_model):
    import copy

    return {
        "bf16": copy.deepcopy(tiny_model).to(torch.bfloat16, print_details=False),
        "half()": copy.deepcopy(tiny_model).half(),
    }


def _raw(result):
    results = result.values() if isinstance(result, dict) else [result]
    return [t for r in results for t in ((r.exact.raw, r.approx.raw) if hasattr(r, "exact") else (r.raw,))]


@pytest.mark.parametrize("low", sorted(LOW))
@pytest.mark.parametrize("name", METHODS)
def test_reduced_precision_runs_and_stays_close_to_float32(name, low, low_models):
    global MODEL
    dtype, tol = LOW[low]
    reference = _raw(_calls()[name](CLEAN, CORRUPTED, good_metric))
    model = low_models[low]
    cfg_dtype = model.cfg.dtype
    MODEL = model
    try:
        got = _raw(_calls()[name](CLEAN, CORRUPTED, good_metric))
    finally:
        MODEL = None
    assert next(model.parameters()).dtype == dtype and model.cfg.dtype == cfg_dtype  # left as it was
    assert_no_hooks(model)
    for ref, low_t in zip(reference, got):
        assert low_t.dtype == torch.float32 and torch.isfinite(low_t).all()
        scale = float(ref.abs().max()) + 1.0
        assert float((low_t - ref).abs().max()) <= tol * scale, (name, low, float((low_t - ref).abs().max()), scale)


def test_float16_overflow_is_a_clear_error(tiny_model):
    """Logits past float16's range give a NonFiniteError that names the dtype, not a raw torch error."""
    import copy

    model = copy.deepcopy(tiny_model).to(torch.float16, print_details=False)
    with torch.no_grad():
        model.unembed.W_U.copy_(torch.randn_like(model.unembed.W_U) * 3e4)  # logits of about 1e5
    for call in (lambda: activation_patch(model, CLEAN, CORRUPTED, good_metric),
                 lambda: attribution_patch(model, CLEAN, CORRUPTED, good_metric, sites="resid_pre")):
        with pytest.raises(NonFiniteError, match="float16"):
            call()
    assert_no_hooks(model)


def test_mixed_dtype_weights_are_a_clear_error(tiny_model):
    import copy

    model = copy.deepcopy(tiny_model)
    model.blocks[0].half()
    with pytest.raises(MechinterpError, match="model.to"):
        activation_patch(model, CLEAN, CORRUPTED, good_metric)
    assert_no_hooks(model)
