"""Integrated gradients: completeness, convergence, chunking, baselines, and captum equality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechinterp.attribution import Contrast, NextToken, attribute, quadrature
from mechinterp.errors import MechinterpError

PROMPT = "w1 w5 w9 w2 w7 w3"


@pytest.mark.parametrize("target", [NextToken("w4"), NextToken("w4", kind="logprob"), Contrast("w4", "w8")])
def test_completeness_under_one_percent_at_64_gauss_legendre_steps(tiny_model, target):
    res = attribute(tiny_model, PROMPT, target, method="ig", n_steps=64, rule="gausslegendre", warn=False)
    gap = res.metadata["target_values"][0] - res.metadata["baseline_values"][0]
    assert abs(float(res.scores.sum()) - gap) < 0.01 * abs(gap)
    assert res.metadata["relative_delta"][0] < 0.01


def test_delta_shrinks_as_steps_grow(tiny_model):
    deltas = [abs(attribute(tiny_model, PROMPT, "w4", method="ig", n_steps=n, rule="riemann_right", baseline="pad",
                            warn=False).metadata["convergence_delta"][0]) for n in (2, 8, 32)]
    assert deltas[0] > deltas[1] > deltas[2]


def test_chunking_does_not_change_the_result(tiny_model):
    a = attribute(tiny_model, PROMPT, "w4", method="ig", n_steps=20, internal_batch_size=3, warn=False)
    b = attribute(tiny_model, PROMPT, "w4", method="ig", n_steps=20, internal_batch_size=64, warn=False)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-6, rtol=1e-5)


def test_quadrature_rules():
    for rule in ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"):
        _, w = quadrature(16, rule)
        assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    a, w = quadrature(3, "gausslegendre")  # exact up to degree 5: ∫ x^5 = 1/6
    assert float((w * a**5).sum()) == pytest.approx(1 / 6, abs=1e-12)
    with pytest.raises(MechinterpError, match="Unknown integration rule"):
        quadrature(4, "simpson")


def test_baselines(tiny_model):
    d = tiny_model.cfg.d_model
    for baseline in ("zero", "pad", "unk", 5, torch.zeros(d), torch.randn(7, d)):
        res = attribute(tiny_model, PROMPT, "w4", method="ig", baseline=baseline, n_steps=64, warn=False)
        assert res.metadata["relative_delta"][0] < 0.01
        assert res.scores[0, 0] == 0  # BOS keeps its embedding
    zero_tensor = attribute(tiny_model, PROMPT, "w4", method="ig", baseline=torch.zeros(d), n_steps=16, warn=False)
    zero = attribute(tiny_model, PROMPT, "w4", method="ig", baseline="zero", n_steps=16, warn=False)
    torch.testing.assert_close(zero_tensor.scores, zero.scores)
    with pytest.raises(MechinterpError, match="no mask token"):
        attribute(tiny_model, PROMPT, "w4", method="ig", baseline="mask")
    with pytest.raises(MechinterpError):
        attribute(tiny_model, PROMPT, "w4", method="ig", baseline=torch.zeros(3, d))


def test_counterfactual_token_baseline_attributes_only_where_the_prompts_differ(tiny_model):
    clean = tiny_model.to_tokens(PROMPT)[0]
    other = clean.clone()
    other[3] = int(tiny_model.to_single_token("w8"))  # a minimal pair: one word differs
    res = attribute(tiny_model, clean, "w4", method="ig", baseline=other, n_steps=64, warn=False)
    nonzero = (res.scores[0].abs() > 0).nonzero().flatten().tolist()
    assert nonzero == [3] and res.metadata["relative_delta"][0] < 0.01
    answer = int(tiny_model.to_single_token("w4"))
    with torch.no_grad():
        gap = tiny_model(clean[None])[0, -1, answer] - tiny_model(other[None])[0, -1, answer]
    assert float(res.scores.sum()) == pytest.approx(float(gap), rel=0.01)
    with pytest.raises(MechinterpError, match="token-id baseline"):
        attribute(tiny_model, clean, "w4", method="ig", baseline=other[:3], warn=False)


@pytest.mark.parametrize("rule,captum_rule", [("gausslegendre", "gausslegendre"), ("riemann_middle", "riemann_middle"), ("riemann_right", "riemann_right")])
def test_equals_captum_layer_integrated_gradients(tiny_model, rule, captum_rule):
    from captum.attr import LayerIntegratedGradients

    tokens = tiny_model.to_tokens(PROMPT)
    target = int(tiny_model.to_single_token("w4"))
    pad = tiny_model.tokenizer.pad_token_id
    baseline = torch.full_like(tokens, pad)
    baseline[:, 0] = tokens[:, 0]  # BOS kept, as ours does by default

    def forward(toks):
        return tiny_model(toks)[:, -1, target]

    lig = LayerIntegratedGradients(forward, tiny_model.embed)
    ref, delta = lig.attribute(tokens, baselines=baseline, n_steps=32, method=captum_rule, return_convergence_delta=True)
    ours = attribute(tiny_model, PROMPT, "w4", method="ig", baseline="pad", n_steps=32, rule=rule, warn=False)
    np.testing.assert_allclose(ours.scores[0].numpy(), ref.sum(-1)[0].detach().numpy(), atol=1e-4)
    assert ours.metadata["convergence_delta"][0] == pytest.approx(float(delta), abs=1e-4)


def test_equals_captum_on_a_gelu_new_model(tiny_model):
    """GPT-2's activation: ours runs it (and LayerNorm) as fused kernels, captum runs TL's chains; same scores."""
    from captum.attr import LayerIntegratedGradients
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=tiny_model.cfg.d_vocab,
                                  act_fn="gelu_new", normalization_type="LN", seed=6, device="cpu")
    model = HookedTransformer(cfg, tokenizer=tiny_model.tokenizer).eval()
    tokens = model.to_tokens(PROMPT)
    target = int(model.to_single_token("w4"))
    baseline = torch.full_like(tokens, model.tokenizer.pad_token_id)
    baseline[:, 0] = tokens[:, 0]
    lig = LayerIntegratedGradients(lambda toks: model(toks)[:, -1, target], model.embed)
    ref, delta = lig.attribute(tokens, baselines=baseline, n_steps=32, method="gausslegendre", return_convergence_delta=True)
    ours = attribute(model, PROMPT, "w4", method="ig", baseline="pad", n_steps=32, warn=False)
    np.testing.assert_allclose(ours.scores[0].numpy(), ref.sum(-1)[0].detach().numpy(), atol=1e-5)
    assert ours.metadata["convergence_delta"][0] == pytest.approx(float(delta), abs=1e-5)
    assert all(b.mlp.act_fn.__name__ == "gelu_new" for b in model.blocks)


def test_shared_prefix_does_not_change_the_result(tiny_model, monkeypatch):
    """Positions where x = x' (BOS, and here a shared counterfactual prefix) run once as a cached prefix;
    the scores and delta equal those of the full batch."""
    import mechinterp.attribution.integrated_gradients as ig

    real = ig.shared_prefix_length
    clean = "w1 w5 w9 w2 w7 w3"
    other = tiny_model.to_tokens("w1 w5 w8 w2 w7 w3")[0]
    runs = {}
    for name in ("shared", "full"):
        if name == "full":
            monkeypatch.setattr(ig, "shared_prefix_length", lambda diff: 0)
        for baseline in ("pad", other):
            runs[name, isinstance(baseline, str)] = attribute(tiny_model, clean, "w4", method="ig", baseline=baseline, n_steps=16,
                                                              warn=False)
    for pad in (True, False):
        np.testing.assert_allclose(runs["shared", pad].scores.numpy(), runs["full", pad].scores.numpy(), atol=1e-6)
        assert runs["shared", pad].metadata["convergence_delta"][0] == pytest.approx(runs["full", pad].metadata["convergence_delta"][0],
                                                                                    abs=1e-5)
    assert real(torch.zeros(1, 4, 3)) == 4
    assert real(torch.tensor([[[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])) == 1


def test_default_baseline_is_the_mean_token_embedding_unless_the_model_declares_one(tiny_model):
    """``"auto"``: a model that declares no ``absence_token`` (every non-zoo model) gets the mean embedding."""
    default = attribute(tiny_model, PROMPT, "w4", method="ig", n_steps=16, warn=False)
    mean = attribute(tiny_model, PROMPT, "w4", method="ig", baseline=tiny_model.W_E.detach().mean(0), n_steps=16, warn=False)
    torch.testing.assert_close(default.scores, mean.scores)
    assert default.options["baseline"] == "auto" and default.metadata["relative_delta"][0] < 0.01


@pytest.mark.filterwarnings("ignore::mechinterp.attribution.MissingBOSWarning")  # no BOS on purpose
def test_first_token_is_kept_without_bos_and_moves_on_request(tiny_model):
    tokens = tiny_model.to_tokens(PROMPT)[0, 1:]  # no BOS: position 0 is "w1"
    kept = attribute(tiny_model, tokens, "w4", method="ig", n_steps=32, warn=False)
    assert kept.scores[0, 0] == 0 and kept.metadata["first_token_kept"]
    moved = attribute(tiny_model, tokens, "w4", method="ig", n_steps=32, keep_first_token=False, warn=False)
    assert moved.scores[0, 0] != 0 and not moved.metadata["first_token_kept"]
    for res in (kept, moved):  # both are complete; they explain different gaps F(x) - F(x')
        assert res.metadata["relative_delta"][0] < 0.01
    assert kept.metadata["baseline_values"] != moved.metadata["baseline_values"]
    with_bos = attribute(tiny_model, PROMPT, "w4", method="ig", n_steps=8, keep_first_token=False, warn=False)
    assert with_bos.scores[0, 0] == 0  # BOS follows keep_bos, not keep_first_token


def test_a_large_completeness_gap_warns_with_the_measured_gap(tiny_model):
    from mechinterp.attribution import CompletenessWarning

    with pytest.warns(CompletenessWarning, match=r"misses completeness by \d+\.\d% .*n_steps=1 .*riemann_left") as rec:
        res = attribute(tiny_model, PROMPT, "w4", method="ig", n_steps=1, rule="riemann_left", warn=False)
    measured = f"{res.metadata['relative_delta'][0]:.1%}"
    assert measured in str(rec[0].message)
    with pytest.warns(CompletenessWarning, match="zero baseline makes every norm layer divide"):
        attribute(tiny_model, PROMPT, "w4", method="ig", n_steps=1, rule="riemann_left", baseline="zero", warn=False)
    tokens = tiny_model.to_tokens(PROMPT)[0, 1:]
    with pytest.warns(CompletenessWarning, match="attention sink"):
        attribute(tiny_model, tokens, "w4", method="ig", n_steps=1, rule="riemann_left", keep_first_token=False, warn=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", CompletenessWarning)
        attribute(tiny_model, PROMPT, "w4", method="ig", n_steps=1, rule="riemann_left", warn_delta=None, warn=False)
        attribute(tiny_model, PROMPT, "w4", method="ig", n_steps=64, warn=False)  # 64 GL steps: complete, silent


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_accumulate_in_float32(tiny_model, dtype):
    """The passes run in bf16/fp16; path, sum and scores are float32, so the scores match the fp32 model's to ~1%.

    What is left of the completeness gap is the half-precision model's own rounding of F(x) and F(x') (~0.01 on
    these logits): pad baseline, gap 1.31: bf16 0.65% (fp32 2e-7). With the mean baseline the gap here is only
    0.08, and the same ~0.009 absolute error is 12% of it, so this test uses the pad baseline."""
    import copy

    half = copy.deepcopy(tiny_model).to(dtype, print_details=False)
    res = attribute(half, PROMPT, "w4", method="ig", n_steps=64, baseline="pad", warn=False)
    ref = attribute(tiny_model, PROMPT, "w4", method="ig", n_steps=64, baseline="pad", warn=False)
    assert res.metadata["accumulation_dtype"] == "float32" and ref.metadata["accumulation_dtype"] == "float32"
    assert res.metadata["relative_delta"][0] < 0.01
    torch.testing.assert_close(res.scores, ref.scores, atol=0.02 * float(ref.scores.abs().max()), rtol=0)


def test_an_integer_2d_baseline_is_not_read_as_token_ids(tiny_model):
    """Issue 16 item 5: an integer ``[pos, d_model]`` baseline was flattened and read as token ids."""
    n, d = tiny_model.to_tokens(PROMPT).shape[1], tiny_model.cfg.d_model
    with pytest.raises(MechinterpError, match="float tensor"):
        attribute(tiny_model, PROMPT, "w4", method="ig", baseline=torch.zeros(n, d, dtype=torch.long), warn=False)


def test_a_longer_counterfactual_baseline_raises(tiny_model):
    """Issue 16 item 5: a token-id baseline longer than the prompt was truncated silently."""
    from mechinterp.errors import ShapeMismatchError

    clean = tiny_model.to_tokens(PROMPT)[0]
    longer = torch.cat([clean, clean[1:3]])
    with pytest.raises(ShapeMismatchError, match="lengths must match"):
        attribute(tiny_model, clean, "w4", method="ig", baseline=longer, warn=False)


def test_a_token_prompt_without_bos_warns_when_the_model_prepends_bos(tiny_model):
    """Issue 16 item 5: a token tensor without BOS changes F(x) and was accepted silently."""
    import warnings

    from mechinterp.attribution import MissingBOSWarning

    assert tiny_model.cfg.default_prepend_bos and tiny_model.tokenizer.bos_token_id is not None
    tokens = tiny_model.to_tokens(PROMPT)[0]
    with pytest.warns(MissingBOSWarning, match="prepend"):
        attribute(tiny_model, tokens[1:], "w4", method="saliency", warn=False)
    assert issubclass(MissingBOSWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingBOSWarning)
        attribute(tiny_model, tokens, "w4", method="saliency", warn=False)  # with BOS: no warning
        attribute(tiny_model, PROMPT, "w4", method="saliency", warn=False)  # a string: BOS added
        tiny_model.cfg.default_prepend_bos = False  # a model that follows its tokenizer (SmolLM2): no warning
        try:
            attribute(tiny_model, tokens[1:], "w4", method="saliency", warn=False)
        finally:
            tiny_model.cfg.default_prepend_bos = True
