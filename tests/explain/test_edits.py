"""Deletions and insertions in the counterfactual search (``edits=``): constructed cases with one
known answer, the plausibility rule on zoo:toy-lm, re-tokenization on a BPE model, bad input."""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.hooks import active_hooks
from mechinterp.core.tokens import tokenize
from mechinterp.errors import MechinterpError
from mechinterp.explain import counterfactual
from mechinterp.explain.edits import EDIT_KINDS, check_edit_kinds

ALL = ("substitute", "delete", "insert")


@pytest.fixture(scope="module")
def copy_prev(tmp_path_factory):
    """A hand-built 1-layer attention-only model whose next-token logits are ``10 · onehot(x_{L-2})``:
    one head attends from each position to the one before it (positional query/key), copies that
    token into a separate subspace, and the unembedding reads only that subspace. So the prediction
    after ``a b c end`` is ``c``, the token before the last, exactly."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from mechinterp.zoo.tokenizer import word_tokenizer

    words = ["a", "b", "c", "d", "end"]
    tok = word_tokenizer(words, tmp_path_factory.mktemp("copy-prev-tok"))
    V, N = len(words) + 3, 16
    cfg = HookedTransformerConfig(n_layers=1, d_model=2 * V + N, n_heads=1, d_head=N, n_ctx=N, d_vocab=V, attn_only=True,
                                  normalization_type=None, act_fn="relu", device="cpu", default_prepend_bos=True)
    model = HookedTransformer(cfg, tokenizer=tok)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.W_E[torch.arange(V), torch.arange(V)] = 1.0  # token slot
        model.pos_embed.W_pos[torch.arange(N), V + torch.arange(N)] = 1.0  # position slot
        attn = model.blocks[0].attn
        attn.W_Q[0, V + torch.arange(N), torch.arange(N)] = 10.0  # the query at p uses head dim p
        attn.W_K[0, V + torch.arange(N - 1), torch.arange(1, N)] = 10.0  # the key at p' sits at head dim p' + 1
        attn.W_V[0, torch.arange(V), torch.arange(V)] = 1.0  # copy the token
        attn.W_O[0, torch.arange(V), V + N + torch.arange(V)] = 1.0  # into the copied slot
        model.unembed.W_U[V + N + torch.arange(V), torch.arange(V)] = 10.0
    model.eval()
    return model


def _top(model, text):
    with torch.no_grad():
        return model.tokenizer.decode([int(model(text)[0, -1].argmax())])


def test_copy_prev_model_is_what_it_claims(copy_prev):
    for text, answer in [("a b c end", "c"), ("a b end", "b"), ("a b c d end", "d"), ("d a b c end", "c")]:
        assert _top(copy_prev, text) == answer


def test_only_a_deletion_flips_and_the_search_finds_exactly_it(copy_prev):
    """``a b c end`` predicts ``c``. Replacements and insertions may only use ``c`` and ``end`` is
    fixed, so no substitution or insertion changes the token before the last; of the deletions,
    only deleting ``c`` (position 3) does (``a b end`` → ``b``)."""
    options = {"among": ["b", "c"], "allowed": ["c"], "fixed": [-1], "max_token_drop": None}
    cf = counterfactual(copy_prev, "a b c end", edits=ALL, **options)
    assert cf.success and cf.n_edits == 1 and cf.kinds == ["delete"] and cf.positions == [3]
    assert cf.edits[0]["old"] == "c" and cf.edits[0]["new"] is None and cf.edits[0]["edited_position"] is None
    assert cf.edited_tokens == ["<bos>", "a", "b", "end"] and cf.new_prediction == "b"
    assert cf.margin_after == pytest.approx(0.0 - 10.0, abs=1e-3) and cf.retokenizes
    assert "delete 'c'@3" in cf.summary() and "line-through" in cf.to_html() and cf.plot() is not None
    # without deletions nothing flips, within any number of edits
    assert not counterfactual(copy_prev, "a b c end", edits=("substitute", "insert"), **options).success
    assert active_hooks(copy_prev) == []


def test_only_an_insertion_flips_and_the_search_finds_exactly_it(copy_prev):
    """``a b c end`` with ``c`` fixed and ``d`` the only allowed new token: no substitution
    changes the token before the last (``end`` → ``d`` leaves ``c`` there), the last token is never
    deleted, and of the four insertion gaps only ``d`` before ``end`` makes ``d`` the token before
    the last."""
    options = {"among": ["c", "d"], "allowed": ["d"], "fixed": ["c"], "max_token_drop": None}
    cf = counterfactual(copy_prev, "a b c end", edits=ALL, **options)
    assert cf.success and cf.n_edits == 1 and cf.kinds == ["insert"] and cf.positions == []
    e = cf.edits[0]
    assert (e["position"], e["new"], e["old"], e["edited_position"]) == (4, "d", None, 4)
    assert cf.edited_tokens == ["<bos>", "a", "b", "c", "d", "end"] and cf.new_prediction == "d"
    assert cf.edited_text == "a b c d end" and cf.retokenizes
    # one pass: 3 substitutions (a, b, end -> d), 2 deletions (a, b), 4 gaps x 1 allowed token
    assert cf.n_forward == 1 + 3 + 2 + 4
    assert cf.n_backward == 1 + 4  # the prompt, and each gap with its anchor (d) inserted
    assert "insert 'd' before @4" in cf.summary() and "rgba(39,174,96" in cf.to_html() and cf.plot() is not None
    # without insertions nothing flips, within any number of edits
    assert not counterfactual(copy_prev, "a b c end", edits=("substitute", "delete"), **options).success


def test_insertion_never_goes_between_fixed_tokens_or_after_the_last(copy_prev):
    """With ``c`` and ``end`` fixed the one flipping gap is closed; appending is never searched."""
    cf = counterfactual(copy_prev, "a b c end", edits=("insert",), among=["c", "d"], allowed=["d"], fixed=["c", "end"],
                        max_token_drop=None, max_edits=2)
    assert not cf.success and all(e["position"] < 3 for e in cf.edits)


def test_insertion_ranking_is_hotflip_at_the_anchor(copy_prev):
    """The first-order estimate of inserting ``v`` is ``(E[v] - E[v*]) · g`` with ``g`` the margin's
    gradient at the inserted anchor ``v*``; this model's margin is linear in the token before the
    last, so the estimate is the exact change from the anchor's margin: inserting ``a`` before
    ``end`` gives margin 0 (a tie of ``c`` and ``d``), ``d`` gives -10, estimated -10."""
    from mechinterp.explain.counterfactual import _gradients, _Objective

    tokens = copy_prev.to_tokens("a b c end")[0].tolist()
    a, c, d = (copy_prev.to_single_token(w) for w in "acd")
    objective = _Objective(c, True, [c, d])
    grads, _, _ = _gradients(copy_prev, [tokens[:4] + [a] + tokens[4:]], objective)
    W_E = copy_prev.W_E.detach()
    est = float((W_E[d] - W_E[a]) @ grads[0, 4])
    with torch.no_grad():
        margins = [float(objective(copy_prev(torch.tensor([tokens[:4] + [v] + tokens[4:]]))[:, -1])[0]) for v in (a, d)]
    assert margins == pytest.approx([0.0, -10.0], abs=1e-3)
    assert est == pytest.approx(margins[1] - margins[0], abs=1e-3)


def test_new_edits_obey_the_plausibility_rule(toy_lm):
    """Each token an edit moves is at most max_token_drop nats less likely than what it stands in for.
    Insertion: "city" into "The capital of Finland is"; deletion: "city" out of "... city of Mali ..."."""
    def logp(tokens, at):  # log p(tokens[at] | tokens[:at])
        with torch.no_grad():
            return float(toy_lm(torch.tensor([tokens[:at]])).log_softmax(-1)[0, -1, tokens[at]])

    tokens = toy_lm.to_tokens("The capital of Finland is")[0].tolist()
    cf = counterfactual(toy_lm, "The capital of Finland is", edits=ALL)
    assert cf.success and cf.kinds == ["insert"] and cf.edits[0]["new"] == "city" and cf.edits[0]["position"] == 3
    new = tokens[:3] + [cf.edits[0]["new_id"]] + tokens[3:]
    assert logp(new, 3) >= logp(tokens, 3) - 3.0  # "city" vs "of" after "The capital"
    assert logp(new, 4) >= logp(tokens, 3) - 3.0  # "of" after "The capital city" vs after "The capital"
    assert cf.positions == []  # an insertion edits no original token: not the country

    tokens = toy_lm.to_tokens("The capital city of Mali is called")[0].tolist()
    cf = counterfactual(toy_lm, "The capital city of Mali is called", edits=("delete",))
    assert cf.success and cf.kinds == ["delete"] and cf.positions == [3]
    new = tokens[:3] + tokens[4:]
    assert logp(new, 3) >= logp(tokens, 4) - 3.0  # "of" after "The capital" vs after "The capital city"
    # deleting "Mali" would leave "of is": the rule rejects it, so no deletion edits the country
    assert not counterfactual(toy_lm, "The capital city of Mali is called", edits=("delete",), fixed=["city"]).success


def test_edited_prompt_retokenizes_on_a_bpe_model(bpe_model):
    """Sub-word tokens can merge after a deletion or an insertion (``"Par" + "is"`` reads back as
    ``"Paris"``); the search keeps only candidates whose text tokenizes back to exactly the
    evaluated tokens, so the returned prompt does (no BOS here)."""
    from mechinterp.explain.counterfactual import _retokenizes

    tok = bpe_model.tokenizer
    vocab = tok.get_vocab()
    merged = next((i, vocab[s[:k]], vocab[s[k:]]) for s, i in sorted(vocab.items()) if s[:1].isalpha() and len(s) > 3
                  for k in range(1, len(s)) if s[:k] in vocab and s[k:] in vocab)
    whole, left, right = merged
    assert _retokenizes(bpe_model, [whole], False) and not _retokenizes(bpe_model, [left, right], False)
    cf = counterfactual(bpe_model, "The capital of France is", edits=ALL, max_token_drop=None, max_edits=2)
    assert cf.retokenizes
    ids = tokenize(bpe_model, cf.edited_text).tokens[0].tolist()
    assert [tok.decode([i]) for i in ids] == cf.edited_tokens


def test_default_is_substitutions_and_matches_explicit(toy_lm):
    a = counterfactual(toy_lm, "The capital of France is", target="Rome")
    b = counterfactual(toy_lm, "The capital of France is", target="Rome", edits=("substitute",))
    assert a == b and a.options["edits"] == ["substitute"]
    with pytest.warns(DeprecationWarning, match="edits="):
        c = counterfactual(toy_lm, "The capital of France is", target="Rome", deletions=True)
    assert c.options["edits"] == ["substitute", "delete"]


@pytest.mark.parametrize("edits, match", [
    (("swap",), "unknown edit kind 'swap'"),
    ((), "edits is empty"),
    (("substitute", "remove"), "unknown edit kind 'remove'"),
    (3, "tuple of edit kinds"),
])
def test_bad_edit_kinds(toy_lm, edits, match):
    with pytest.raises(MechinterpError, match=match):
        counterfactual(toy_lm, "The capital of France is", edits=edits)
    assert active_hooks(toy_lm) == []


def test_check_edit_kinds_is_canonical():
    assert check_edit_kinds(("insert", "substitute", "insert")) == ("substitute", "insert")
    assert check_edit_kinds("delete") == ("delete",) and EDIT_KINDS == ALL
