"""AttnLRP / CP-LRP on SmolLM2-135M-Instruct (rotary, RMSNorm, SwiGLU, grouped-query attention, no BOS).

Fact prompts: 27 countries whose name and capital are one token each, in the three fact
templates of ``mechinterp.tasks.vocab.FACT_TEMPLATES`` (written without the zoo's space before
the comma), kept where the model's top-1 next token is the capital (63 of 81). The target is the
contrast ``logit(capital) − logit(another kept country's capital)``, so template words cancel.
``benchmarks/attribution_lrp_smollm2.py`` prints the same numbers per template and for CP-LRP.
"""

from __future__ import annotations

import pytest
import torch

from mechinterp.attribution import attribute, lrp_hooks
from mechinterp.attribution.forward import frozen_parameters, token_embeddings

pytestmark = pytest.mark.real

COUNTRIES = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
             ("Russia", "Moscow"), ("England", "London"), ("Egypt", "Cairo"), ("Greece", "Athens"), ("China", "Beijing"),
             ("Austria", "Vienna"), ("Ireland", "Dublin"), ("Portugal", "Lisbon"), ("Poland", "Warsaw"), ("Norway", "Oslo"),
             ("Sweden", "Stockholm"), ("Canada", "Ottawa"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Cuba", "Havana"),
             ("Korea", "Seoul"), ("Iran", "Tehran"), ("Hungary", "Budapest"), ("Belgium", "Brussels"),
             ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Chile", "Santiago")]
TEMPLATES = ["The capital of {} is", "In {}, the capital city is", "The capital city of {} is called"]


def _single(model, word: str) -> int:
    ids = model.tokenizer.encode(" " + word, add_special_tokens=False)
    assert len(ids) == 1, f"' {word}' is {len(ids)} tokens"
    return ids[0]


@pytest.fixture(scope="module")
def fact_prompts(smollm2):
    """Per template: (prompts, countries, capitals, other capitals) of the prompts the model answers correctly."""
    out = []
    for template in TEMPLATES:
        tokens = smollm2.to_tokens([template.format(c) for c, _ in COUNTRIES])  # one length: every name is one token
        with torch.no_grad():
            top = smollm2(tokens)[:, -1].argmax(-1).tolist()
        kept = [(c, cap) for (c, cap), t in zip(COUNTRIES, top) if t == _single(smollm2, cap)]
        others = [kept[(i + 1) % len(kept)][1] for i in range(len(kept))]
        out.append(([template.format(c) for c, _ in kept], [c for c, _ in kept], [cap for _, cap in kept], others))
    return out


def _batched_lrp(model, prompts, good, bad, variant="attn_lrp"):
    """LRP relevances ``[batch, pos]`` of ``logit(good) − logit(bad)`` for same-length prompts in one
    forward/backward pass (the rules act element-wise, so rows do not interact)."""
    tokens = model.to_tokens(prompts)
    embed = token_embeddings(model, tokens).detach().requires_grad_(True)
    hooks = [("hook_embed", lambda value, hook: embed)] + lrp_hooks(model, variant)
    with torch.enable_grad(), frozen_parameters(model), model.hooks(fwd_hooks=hooks):
        logits = model(tokens)[:, -1]  # [batch, d_vocab]
        rows = torch.arange(len(prompts))
        (logits[rows, good] - logits[rows, bad]).sum().backward()
    return (embed.grad * embed).sum(-1).detach(), tokens


def test_fact_words_are_single_tokens_and_mostly_answered(smollm2, fact_prompts):
    for country, capital in COUNTRIES:
        _single(smollm2, country), _single(smollm2, capital)
    assert sum(len(p) for p, *_ in fact_prompts) >= 55  # 63 of 81 measured: the hit rate below is over many prompts


def test_attn_lrp_puts_the_top_score_on_the_subject(smollm2, fact_prompts):
    hits, n = 0, 0
    for prompts, countries, capitals, others in fact_prompts:
        good = [_single(smollm2, c) for c in capitals]
        bad = [_single(smollm2, c) for c in others]
        scores, tokens = _batched_lrp(smollm2, prompts, good, bad)
        subject = [_single(smollm2, c) for c in countries]
        hits += sum(int(tokens[i, int(scores[i].argmax())]) == subject[i] for i in range(len(prompts)))
        n += len(prompts)
        one = attribute(smollm2, prompts[0], (" " + capitals[0], " " + others[0]), method="attn_lrp", warn=False)
        torch.testing.assert_close(one.scores[0], scores[0], atol=1e-4, rtol=1e-4)  # the batch is attribute()'s result
    assert hits / n >= 0.9, f"{hits}/{n}"  # measured: 57/63


def test_lrp_conserves_relevance_on_smollm2(smollm2):
    prompt, target = "The capital of France is", (" Paris", " Berlin")
    cp = attribute(smollm2, prompt, target, method="cp_lrp", warn=False)
    value = cp.metadata["target_values"][0]
    assert value > 1.0
    assert float(cp.scores.sum()) == pytest.approx(value, rel=1e-4)  # bias-free model: nothing absorbed
    attn = attribute(smollm2, prompt, target, method="attn_lrp", warn=False)
    leak = attn.metadata["softmax_absorbed"][0]
    assert float(attn.scores.sum()) + leak == pytest.approx(value, rel=1e-4)  # only the softmax rule absorbs
    assert abs(leak) > 0.1 * value


@pytest.mark.parametrize("method", ["attn_lrp", "cp_lrp"])
def test_lrp_runs_on_bf16_smollm2(smollm2, smollm2_bf16, method):
    prompt, target = "The capital of Germany is", (" Berlin", " Paris")
    full = attribute(smollm2, prompt, target, method=method, warn=False)
    half = attribute(smollm2_bf16, prompt, target, method=method, warn=False)
    assert half.scores.dtype == torch.float32 and torch.isfinite(half.scores).all()
    assert int(half.scores.argmax()) == int(full.scores.argmax())  # " Germany" in both
    assert float((half.scores - full.scores).abs().max()) < 0.25 * float(full.scores.abs().max())
