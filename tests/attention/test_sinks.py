"""Attention sinks: hand-computed exclusions, rollout / flow / gradient rollout / head scores
with and without a sink, in closed form on hand patterns and hand-built models."""

from __future__ import annotations

import pytest
import torch

from mechinterp.attention import (
    attention_flow,
    attention_rollout,
    gradient_rollout,
    head_scores,
    relevance_from_gradients,
    rollout_from_patterns,
    score_heads,
)
from mechinterp.attention.sinks import exclude_sinks, resolve_sinks, sink_note, sink_share
from mechinterp.errors import MechinterpError

# One head, three tokens: rows [1], [.8, .2], [.6, .3, .1]; position 0 is the sink.
A = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.2, 0.0], [0.6, 0.3, 0.1]])


def test_exclude_sinks_by_hand():
    self_mode = exclude_sinks(A, [0], "self")
    torch.testing.assert_close(self_mode, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.3, 0.7]]))
    renorm = exclude_sinks(A, [0], "renormalise")
    torch.testing.assert_close(renorm, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.75, 0.25]]))
    # two sinks: row 2 keeps only itself; sink rows (0 and 1) are untouched
    torch.testing.assert_close(exclude_sinks(A, [0, 1], "renormalise"), torch.tensor([[1.0, 0, 0], [0.8, 0.2, 0], [0, 0, 1.0]]))
    # rows keep their total (a bf16 row summing to 0.998 stays at 0.998); padding rows stay zero
    padded = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.498, 0.0], [0.0, 0.0, 0.0]])
    for mode in ("self", "renormalise"):
        torch.testing.assert_close(exclude_sinks(padded, [0], mode).sum(-1), padded.sum(-1))
    assert torch.equal(exclude_sinks(A, [], "self"), A)
    with pytest.raises(MechinterpError, match="sink_mode"):
        exclude_sinks(A, [0], "drop")


def test_resolve_sinks():
    lengths = torch.tensor([5, 3])
    assert resolve_sinks(None, lengths) == [] and resolve_sinks("first", lengths) == [0]
    assert resolve_sinks(2, lengths) == [2] and resolve_sinks([2, 0, 2], lengths) == [0, 2]
    import numpy as np

    assert resolve_sinks(np.int64(1), lengths) == [1] and resolve_sinks(torch.tensor([0, 2]), lengths) == [0, 2]
    bad_inputs = (("last", "sink must"), (-1, ">= 0"), (True, "sink must"), ([], ">= 0"), (3, "every prompt"),
                  (1.5, "sink must"), ([0, 1.5], ">= 0"), ([True], ">= 0"))
    for bad, match in bad_inputs:
        with pytest.raises(MechinterpError, match=match):
            resolve_sinks(bad, lengths)


def test_rollout_two_layers_by_hand():
    # Â = normalise(0.5 A' + 0.5 I), R = Â Â; row 2 computed by hand for each mode
    patterns = A.expand(1, 2, 1, 3, 3)
    plain = rollout_from_patterns(patterns)[0, 2]
    torch.testing.assert_close(plain, torch.tensor([0.525, 0.1725, 0.3025]))
    self_mode = rollout_from_patterns(patterns, sink_positions=[0])[0, 2]
    torch.testing.assert_close(self_mode, torch.tensor([0.0, 0.2775, 0.7225]))
    renorm = rollout_from_patterns(patterns, sink_positions=[0], sink_mode="renormalise")[0, 2]
    torch.testing.assert_close(renorm, torch.tensor([0.0, 0.609375, 0.390625]))


def test_rollout_on_uniform_model_closed_form(uniform_model):
    # W_Q = 0: A[q, k] = 1/(q+1). Plain row 2 of Â² is [23, 17, 32]/72 (test_rollout).
    # self: A'[2] = [0, 1/3, 2/3], A'[1] = [0, 1, 0] -> R[2] = [0, 11/36, 25/36]
    # renormalise: A'[2] = [0, 1/2, 1/2] -> R[2] = [0, 7/16, 9/16]
    tokens = torch.tensor([[1, 2, 3]])
    plain = attention_rollout(uniform_model, tokens)
    torch.testing.assert_close(plain.scores(0), torch.tensor([23.0, 17.0, 32.0]) / 72)
    assert plain.sink_positions == [] and plain.sink_mode is None
    torch.testing.assert_close(plain.sink_share, torch.tensor([23 / 72]))
    sunk = attention_rollout(uniform_model, tokens, sink="first")
    torch.testing.assert_close(sunk.scores(0), torch.tensor([0.0, 11 / 36, 25 / 36]))
    assert sunk.sink_positions == [0] and sunk.sink_mode == "self" and sunk.parameters["sink"] == "first"
    torch.testing.assert_close(sunk.sink_share, torch.tensor([23 / 72]))  # what the sink held without exclusion
    renorm = attention_rollout(uniform_model, tokens, sink=0, sink_mode="renormalise")
    torch.testing.assert_close(renorm.scores(0), torch.tensor([0.0, 7 / 16, 9 / 16]))


def test_rollout_sinks_receive_nothing_and_rows_stay_stochastic(tiny_model):
    prompts = ["w1 w2 w3 w4 w5 w1", "w7 w8 w9"]
    for sink in ("first", [0, 2]):
        for mode in ("self", "renormalise"):
            result = attention_rollout(tiny_model, prompts, sink=sink, sink_mode=mode)
            sinks = result.sink_positions
            for i in range(2):
                m = result.map(i)
                torch.testing.assert_close(m.sum(-1), torch.ones(m.shape[0]))
                others = [q for q in range(m.shape[0]) if q not in sinks]
                assert m[others][:, sinks].abs().max() == 0, (sink, mode)
    with pytest.raises(MechinterpError, match="every prompt"):
        attention_rollout(tiny_model, prompts, sink=4)  # the second prompt has 4 tokens ([BOS] w7 w8 w9)


def test_flow_with_sink_by_hand(uniform_model):
    # Capacities with sink='first' ('self'): Â[1] = [0, 1, 0], Â[2] = [0, 1/6, 5/6] in both layers.
    # F[2, 1] = min(1/6, 1) via (1,1) + min(5/6, 1/6) via (1,2) = 1/3; F[2, 2] = 5/6; F[2, 0] = 0.
    tokens = torch.tensor([[1, 2, 3]])
    sunk = attention_flow(uniform_model, tokens, queries=[-1], sink="first")
    torch.testing.assert_close(sunk.scores(0), torch.tensor([0.0, 1 / 3, 5 / 6]), atol=1e-6, rtol=0)
    assert sunk.sink_positions == [0] and sunk.sink_share is None
    # plain: Â[1] = [1/4, 3/4, 0], Â[2] = [1/6, 1/6, 2/3]; F[2, 0] = 1/6 via each of (1,0), (1,1), (1,2)
    plain = attention_flow(uniform_model, tokens, queries=[-1])
    assert plain.scores(0)[0].item() == pytest.approx(0.5, abs=1e-6) and plain.sink_positions == []
    torch.testing.assert_close(plain.sink_share, plain.scores(0)[:1] / plain.scores(0).sum())


def test_relevance_from_gradients_drops_sink_columns():
    gen = torch.Generator().manual_seed(0)
    pats = torch.rand(2, 3, 2, 4, 4, generator=gen).tril()
    grads = torch.randn(2, 3, 2, 4, 4, generator=gen)
    for sink in (0, 2):
        cut = pats.clone()
        rows = [q for q in range(4) if q != sink]
        cut[..., rows, sink] = 0.0  # the same as zeroing the sink column of every non-sink query
        torch.testing.assert_close(relevance_from_gradients(pats, grads, [sink]), relevance_from_gradients(cut, grads))
    plain, sunk = relevance_from_gradients(pats, grads), relevance_from_gradients(pats, grads, [2])
    assert not torch.allclose(sunk[:, 3, :2], plain[:, 3, :2])  # a later sink also blocks what flows through it


def test_gradient_rollout_with_sink(tiny_model):
    prompts = ["w1 w2 w3 w1 w2", "w4 w5 w4"]
    plain = gradient_rollout(tiny_model, prompts, target="w3")
    sunk = gradient_rollout(tiny_model, prompts, target="w3", sink="first")
    assert sunk.sink_positions == [0] and sunk.sink_mode == "drop"
    for i in range(2):
        assert sunk.scores(i)[0] == 0 and plain.scores(i)[0] > 0
        # causal: the first token passes no other token's relevance on, so the rest is unchanged
        torch.testing.assert_close(sunk.scores(i)[1:], plain.scores(i)[1:])
        torch.testing.assert_close(sunk.sink_share[i], plain.scores(i)[0] / plain.scores(i).sum())
    torch.testing.assert_close(plain.sink_share, sunk.sink_share)


def test_head_scores_with_a_sink_by_hand():
    # A head that puts p on the first token and 1 - p on the previous one.
    n, p = 5, 0.7
    a = torch.zeros(n, n)
    a[0, 0] = 1.0
    for q in range(1, n):
        a[q, 0] += p
        a[q, q - 1] += 1 - p
    tokens = torch.arange(n)[None]
    patterns = a[None, None, None]
    plain = score_heads(patterns, tokens, kinds=["previous_token", "first_token"])
    # row q=1: the previous token *is* the first one (score 1); rows 2..4: 1 - p
    torch.testing.assert_close(plain[:, 0, 0], torch.tensor([(1 + 3 * (1 - p)) / 4, (1 + 3 * p) / 4]))
    sunk = score_heads(patterns, tokens, kinds=["previous_token", "first_token"], sink_positions=[0])
    # row 1 has nothing left (0 / 0 -> 0); rows 2..4 put all of the rest on the previous token
    torch.testing.assert_close(sunk[0, 0, 0], torch.tensor(3 / 4))
    assert torch.isnan(sunk[1, 0, 0])  # first_token is undefined once position 0 is excluded


def test_head_scores_sink_equals_exclude_bos_and_records_it(tiny_model, uniform_model):
    prompts = ["w1 w2 w3 w1 w2 w3", "w4 w5 w4 w6 w5 w4 w7"]
    by_sink = head_scores(tiny_model, prompts, sink="first")
    by_bos = head_scores(tiny_model, prompts, exclude_bos=True)
    torch.testing.assert_close(by_sink.scores, by_bos.scores, equal_nan=True)
    assert by_sink.sink_positions == by_bos.sink_positions == [0]
    assert head_scores(tiny_model, prompts).sink_positions == []
    # uniform attention: queries q >= 1 pay 1/(q+1) to position 0 -> mean over q = 1..3 of a 4-token prompt
    mass = head_scores(uniform_model, torch.tensor([[1, 2, 3, 4]])).first_token_mass
    assert mass == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3, abs=1e-6)


def test_sink_share_and_notes():
    scores = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.4, 0.4]])
    torch.testing.assert_close(sink_share(scores, []), torch.tensor([0.9, 0.2]))
    torch.testing.assert_close(sink_share(scores, [1, 2]), torch.tensor([0.1, 0.8]))
    assert "sink='first'" in sink_note([], None, 0.9) and sink_note([], None, 0.2) == ""
    assert "[0]" in sink_note([0], "self", 1.0) and "100%" in sink_note([0], "self", 1.0)


def test_rendering_says_what_was_excluded(tiny_model, tmp_path):
    import matplotlib.pyplot as plt

    from mechinterp.attention import AttentionMap, HeadScores

    sunk = attention_rollout(tiny_model, ["w1 w2 w3 w1 w2"], sink="first")
    assert "sink [0] excluded (self)" in sunk.plot().axes[0].get_title()
    assert "Attention sink excluded: position(s) [0], mode &#x27;self&#x27;" in sunk.to_html() or \
        "Attention sink excluded: position(s) [0], mode 'self'" in sunk.to_html()
    back = AttentionMap.load(sunk.save(tmp_path / "r.json"))
    assert back.sink_positions == [0] and back.sink_mode == "self"
    torch.testing.assert_close(back.sink_share, sunk.sink_share)
    # a plain map whose first token holds most of the mass says so, with the fix
    heavy = AttentionMap(method="rollout", str_tokens=[["a", "b"]], matrix=torch.eye(2)[None],
                         token_scores=torch.tensor([[0.9, 0.1]]), query_positions=torch.tensor([1]),
                         lengths=torch.tensor([2]), sink_share=torch.tensor([0.9]))
    assert "sink='first'" in heavy.plot().axes[0].get_title() and "sink=&#x27;first&#x27;" in heavy.to_html()
    scores = head_scores(tiny_model, n_probes=4, seg_len=5, sink="first")
    assert "excluded" in scores.to_html()
    back = HeadScores.load(scores.save(tmp_path / "h.json"))
    assert back.sink_positions == [0] and back.first_token_mass == pytest.approx(scores.first_token_mass)
    plt.close("all")
