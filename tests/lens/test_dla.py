"""Direct logit attribution: the closed-form sum, and TransformerLens's own route on the same cache."""

from __future__ import annotations

import copy

import pytest
import torch

import mechinterp
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.errors import MechinterpError
from mechinterp.lens import DLAResult, check_exact, direct_logit_attribution

FACTS = ["The capital of France is", "Everyone knows that the capital of Peru is", "The capital of Japan is"]


def test_components_sum_to_the_logit_difference(toy_lm):
    res = direct_logit_attribution(toy_lm, FACTS, ["Paris", "Lima", "Tokyo"], wrong=["Rome", "Rome", "Rome"])
    tokens = mechinterp.tokenize(toy_lm, FACTS)
    logits = toy_lm(tokens.tokens)[torch.arange(3), tokens.last_pos]
    ids = toy_lm.to_tokens(" Paris Lima Tokyo Rome", prepend_bos=False)[0]
    expect = logits[torch.arange(3), ids[:3]] - logits[:, ids[3]]
    torch.testing.assert_close(res.target, expect.detach(), atol=1e-4, rtol=1e-5)
    assert check_exact(res, atol=1e-4) < 1e-4
    n = toy_lm.cfg
    assert len(res.components) == 2 + n.n_layers * (n.n_heads + 2)
    assert_no_hooks(toy_lm)


@pytest.mark.parametrize("positions", ["last", "all"])
def test_neurons_and_positions_sum_exactly_with_unfolded_layernorm(tiny_model, positions):
    """tiny_model keeps LayerNorm weights and biases unfolded: the w and b paths of the convention."""
    prompts = ["w1 w2 w3 w4", "w5 w6", "w7 w8 w9"]
    res = direct_logit_attribution(tiny_model, prompts, "w3", wrong="w4", neurons=True, positions=positions)
    assert check_exact(res, atol=1e-4) < 1e-4
    assert any(c.startswith("L1N") for c in res.components) and "L1 mlp bias" in res.components
    if positions == "all":
        assert res.scores.shape[1:] == res.mask.shape and not bool(res.scores[:, 1, 3:].any())
        logits = tiny_model(mechinterp.tokenize(tiny_model, prompts).tokens)
        ids = tiny_model.to_tokens("w3 w4", prepend_bos=False)[0]
        expect = (logits[..., ids[0]] - logits[..., ids[1]]) * res.mask
        torch.testing.assert_close(res.target, expect.detach(), atol=1e-4, rtol=1e-5)
    # an MLP's neurons plus its bias are the MLP
    whole = direct_logit_attribution(tiny_model, prompts, "w3", wrong="w4", positions=positions)
    neurons = torch.stack([res[c] for c in res.components if c.startswith("L1N")]).sum(0) + res["L1 mlp bias"]
    torch.testing.assert_close(neurons, whole["MLP1"], atol=1e-5, rtol=1e-4)


def test_heads_match_transformer_lens_stack_head_results(toy_lm):
    answers, wrong = ["Paris", "Lima", "Tokyo"], ["Rome"] * 3
    cache = mechinterp.SharedCache(toy_lm, FACTS, positions="last")
    res = direct_logit_attribution(toy_lm, cache, answers, wrong=wrong)
    tl = cache.to_tl_cache()
    with torch.inference_mode():  # the cache holds inference tensors
        _tl_route(tl, toy_lm, res)


def _tl_route(tl, toy_lm, res):
    stack, labels = tl.stack_head_results(layer=-1, return_labels=True)  # [component, batch, d_model]
    # logit_attrs applies the final norm's cached scale itself (apply_ln_to_stack, layer=-1)
    ids = toy_lm.to_tokens(" Paris Lima Tokyo", prepend_bos=False)[0]
    rome = toy_lm.to_tokens(" Rome", prepend_bos=False)[0].expand(3)
    theirs = tl.logit_attrs(stack, tokens=ids, incorrect_tokens=rome)  # [component, batch]
    ours = torch.stack([res[label] for label in labels])
    torch.testing.assert_close(ours, theirs.float(), atol=1e-4, rtol=1e-4)
    # and the MLPs and embeddings against decompose_resid
    stack, labels = tl.decompose_resid(layer=-1, return_labels=True, mode="mlp")
    theirs = tl.logit_attrs(stack, tokens=ids, incorrect_tokens=rome)
    compared = 0
    for label, row in zip(labels, theirs):  # "0_mlp_out", ..., "embed", "pos_embed"
        ours_label = f"MLP{label.split('_')[0]}" if label.endswith("_mlp_out") else label
        torch.testing.assert_close(res[ours_label], row.float(), atol=1e-4, rtol=1e-4)
        compared += 1
    assert compared == toy_lm.cfg.n_layers + 2


def test_attention_only_model_and_round_trip(tmp_path):
    model = mechinterp.load("zoo:attn-only-2l")
    res = direct_logit_attribution(model, ["t1 t2 t3 t1 t2", "t4 t5 t4"], ["t3", "t5"])
    assert check_exact(res) < 1e-4 and not any(c.startswith("MLP") for c in res.components)
    back = DLAResult.load(res.save(tmp_path / "dla.json"))
    torch.testing.assert_close(back.scores, res.scores)
    assert back.head_matrix().shape == (2, model.cfg.n_heads)
    assert "Direct logit attribution" in res.to_html()
    res.plot()


def test_bad_input(toy_lm):
    with pytest.raises(MechinterpError, match="one answer per prompt"):
        direct_logit_attribution(toy_lm, FACTS, ["Paris", "Lima"])
    capped = copy.deepcopy(toy_lm)
    capped.cfg.output_logits_soft_cap = 30.0
    with pytest.raises(MechinterpError, match="caps its logits"):
        direct_logit_attribution(capped, FACTS, "Paris")
    weights = torch.zeros(3, mechinterp.tokenize(toy_lm, FACTS).tokens.shape[1])
    weights[:, 0] = 1
    with pytest.raises(MechinterpError, match="position weights"):
        direct_logit_attribution(toy_lm, mechinterp.SharedCache(toy_lm, FACTS, positions=weights), "Paris")
    assert_no_hooks(toy_lm)
