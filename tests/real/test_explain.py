"""The explain family on SmolLM2-135M-Instruct: a counterfactual that swaps the country, Grad-CAM's
last-layer identity, and an explanation in words whose every number is cited.

Measured here (fp32 CPU): "The capital of France is" → " Paris" (p=0.77); asked for " Berlin",
the counterfactual with its default options (the plausibility filter) replaces " France" by
" Germany" (one edit, 13 forward passes; p(" Berlin") = 0.80). Plain HotFlip (``max_token_drop=None``)
also edits the first word (SmolLM2 has no BOS, so position 0 is editable) and needs two edits.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from mechinterp.core.hooks import active_hooks
from mechinterp.explain import counterfactual, explain_in_words, grad_cam
from mechinterp.explain.words import numbers_in

pytestmark = pytest.mark.real

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from attribution_real import fact_prompts  # noqa: E402


@pytest.fixture(scope="module")
def fact(smollm2):
    kept = fact_prompts(smollm2, n=2)
    assert kept and kept[0]["prompt"] == "The capital of France is"
    return kept[0]


def test_counterfactual_swaps_the_country(smollm2, fact):
    cf = counterfactual(smollm2, fact["prompt"], target=fact["wrong"])
    assert cf.success and cf.new_prediction == fact["wrong"]
    assert cf.positions == [fact["subject"]]  # the country, and only it
    with torch.no_grad():
        logits = smollm2(smollm2.to_tokens(cf.edited_text))[0, -1]
    assert int(logits.argmax()) == smollm2.to_single_token(fact["wrong"])
    assert active_hooks(smollm2) == []


def test_grad_cam_last_layer_reads_the_last_gradient(smollm2, fact):
    """At the last layer the target's gradient lives at the last position only, so α = g_last / P:
    raw[-1] = grad_x_act[-1] / P there, and gradient × activation is 0 elsewhere."""
    cam = grad_cam(smollm2, fact["prompt"], (fact["answer"], fact["wrong"]), layers=[0, -1])
    n = len(cam.tokens)
    assert torch.count_nonzero(cam.grad_x_act[1, :-1]) == 0
    assert float(cam.raw[1, -1]) == pytest.approx(float(cam.grad_x_act[1, -1]) / n, rel=1e-4, abs=1e-6)
    assert float(cam.combined.sum()) == pytest.approx(1.0, abs=1e-5)


def test_words_cite_every_number(smollm2, fact):
    res = explain_in_words(smollm2, fact["prompt"], (fact["answer"], fact["wrong"]), method="gradient_x_input")
    assert res.evidence["prediction.token"] == fact["answer"]
    for sentence in res.sentences:
        values = [float(res.evidence[k]) for k in sentence["cites"] if not isinstance(res.evidence[k], str)]
        for number in numbers_in(sentence["text"]):
            x = float(number.rstrip("%")) / (100 if number.endswith("%") else 1)
            assert any(abs(x - v) <= 6e-4 + 5e-3 * abs(v) for v in values), (number, sentence["text"])


def test_cot_numbers_are_the_models(smollm2):
    """The dependence and probability drop are the model's own numbers (recomputed here)."""
    from mechinterp.explain import cot_faithfulness

    parts = [smollm2.to_tokens("Question: what is 2 plus 3? Reasoning:")[0],
             smollm2.to_tokens(" 2 plus 3 is 5.", prepend_bos=False)[0],
             smollm2.to_tokens(" Answer:", prepend_bos=False)[0]]
    res = cot_faithfulness(smollm2, [tuple(parts)], truncations=(0.0,), corrupt=False)
    assert res.interventions == ["truncate@0", "filler"]
    dot = smollm2.to_tokens(" .", prepend_bos=False)[0]
    with torch.no_grad():
        intact = smollm2(torch.cat(parts)[None])[0, -1].softmax(-1)
        filled = smollm2(torch.cat([parts[0], dot.repeat(len(parts[1])), parts[2]])[None])[0, -1].softmax(-1)
    a = int(intact.argmax())
    assert res.answers == [smollm2.tokenizer.decode([a])]
    assert float(res.prob_drop[1, 0]) == pytest.approx(float(intact[a] - filled[a]), abs=1e-5)
    assert float(res.changed[1, 0]) == float(int(filled.argmax()) != a)


def test_global_view_shares(smollm2, fact):
    from mechinterp.attribution import attribute
    from mechinterp.explain import global_attribution

    prompts = [fact["prompt"], "The capital of Germany is"]
    targets = [fact["answer"], " Berlin"]
    view = global_attribution(smollm2, prompts, targets, group_by="position_from_end")
    shares = []
    for p, t in zip(prompts, targets):
        row = attribute(smollm2, p, t, method="gradient_x_input", warn=False).scores[0]
        shares.append(float(row[-1] / row.abs().sum()))  # SmolLM2 has no BOS: every token counts
    assert view.get("-1")["mean"] == pytest.approx(sum(shares) / 2, abs=1e-5)
    assert view.n_prompts == 2 and view.get("-1")["count"] == 2


def test_counterfactual_with_deletions_and_insertions_on_a_bpe_model(smollm2, fact):
    """All three edit kinds on SmolLM2 (BPE, no BOS): away from " Paris" the fewest-edit flip is one
    edit whose text tokenizes back to exactly the tokens evaluated; every insertion gap was run
    backward once (one gradient sequence per gap beside the prompt's own)."""
    cf = counterfactual(smollm2, fact["prompt"], edits=("substitute", "delete", "insert"))
    assert cf.success and cf.n_edits == 1 and cf.retokenizes
    ids = smollm2.to_tokens(cf.edited_text)[0].tolist()
    assert [smollm2.to_string([i]) for i in ids] == cf.edited_tokens
    with torch.no_grad():
        logits = smollm2(torch.tensor([ids]))[0, -1]
    assert smollm2.to_string([int(logits.argmax())]) == cf.new_prediction != fact["answer"]
    n = len(cf.tokens)
    assert cf.n_backward == 1 + (n - 1)  # the prompt, and each of its n - 1 gaps with its anchor inserted
    assert active_hooks(smollm2) == []
