"""Head detection: equality with TransformerLens's head_detector, hand-built heads, the zoo model."""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.attention import HEAD_KINDS, HeadScores, detection_patterns, head_scores, probe_sequences, score_heads
from mechinterp.errors import MechinterpError

PROMPTS = ["w1 w2 w3 w1 w2 w3", "w4 w5 w4 w6 w5 w4 w7", "w9 w8 w7 w9 w8"]
TL_NAMES = {"previous_token": "previous_token_head", "duplicate_token": "duplicate_token_head", "induction": "induction_head"}


@pytest.mark.parametrize("exclude_bos,exclude_current", [(False, False), (True, False), (False, True), (True, True)])
def test_tl_measure_equals_transformer_lens(tiny_model, exclude_bos, exclude_current):
    from transformer_lens.head_detector import detect_head

    ours = head_scores(
        tiny_model, PROMPTS, kinds=list(TL_NAMES), measure="tl",
        exclude_bos=exclude_bos, exclude_current_token=exclude_current,
    )
    for kind, tl_name in TL_NAMES.items():
        ref = detect_head(tiny_model, PROMPTS, tl_name, exclude_bos=exclude_bos, exclude_current_token=exclude_current)
        torch.testing.assert_close(ours.get(kind), ref.float(), atol=1e-5, rtol=1e-4)


def test_detection_patterns_by_hand():
    tokens = torch.tensor([[0, 5, 7, 5, 7]])
    d = detection_patterns(tokens)
    assert d["previous_token"][0].nonzero().tolist() == [[1, 0], [2, 1], [3, 2], [4, 3]]
    assert d["duplicate_token"][0].nonzero().tolist() == [[3, 1], [4, 2]]
    assert d["induction"][0].nonzero().tolist() == [[3, 2], [4, 3]]
    assert d["first_token"][0].nonzero().tolist() == [[1, 0], [2, 0], [3, 0], [4, 0]]
    padded = detection_patterns(torch.tensor([[0, 5, 5, 0]]), torch.tensor([[1, 1, 1, 0]]))
    assert padded["previous_token"][0, 3].sum() == 0 and padded["duplicate_token"][0, :, 3].sum() == 0


def test_perfect_heads_score_one_on_hand_patterns():
    tokens = probe_tokens = torch.tensor([[0, 3, 4, 5, 3, 4, 5]])
    d = detection_patterns(probe_tokens)
    n = tokens.shape[1]
    uniform = torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]
    heads = []
    for kind in HEAD_KINDS:  # a perfect head of each kind where it has targets, uniform elsewhere
        p = d[kind][0].float()
        rows = p.sum(-1, keepdim=True) > 0
        heads.append(torch.where(rows, p / p.sum(-1, keepdim=True).clamp_min(1), uniform))
    patterns = torch.stack(heads)[None, None]  # [batch 1, layer 1, head 4, q, k]
    scores = score_heads(patterns, tokens)
    torch.testing.assert_close(scores.diagonal(dim1=0, dim2=2)[0], torch.ones(4))
    # uniform attention on the same rows scores the mean of 1/(q+1) over the target rows
    prev_uniform = score_heads(uniform[None, None, None], tokens, kinds=["previous_token"])
    torch.testing.assert_close(prev_uniform[0, 0, 0], (1 / torch.arange(2, n + 1).float()).mean())


def test_hand_built_heads_rank_first(positional_model):
    scores = head_scores(positional_model, n_probes=8, seg_len=3)
    assert scores.top("previous_token") == ["L0H0"] and scores.get("previous_token")[0, 0] > 0.99
    assert scores.top("first_token") == ["L0H1"] and scores.get("first_token")[0, 1] > 0.99
    assert scores.get("previous_token")[0, 2] < 0.6


def test_probe_sequences(tiny_model):
    probes = probe_sequences(tiny_model, n=4, seg_len=5, seed=1)
    assert probes.shape == (4, 11)
    assert torch.equal(probes[:, 1:6], probes[:, 6:])
    assert all(len(set(row[1:6].tolist())) == 5 for row in probes)
    assert torch.equal(probes, probe_sequences(tiny_model, n=4, seg_len=5, seed=1))
    special = set(tiny_model.tokenizer.all_special_ids)
    assert not special & set(probes[:, 1:].flatten().tolist())
    with pytest.raises(MechinterpError, match="seg_len"):
        probe_sequences(tiny_model, seg_len=40)


def test_result_outputs(tiny_model, tmp_path):
    scores = head_scores(tiny_model, n_probes=4, seg_len=5)
    assert scores.scores.shape == (4, 2, 4)
    df = scores.to_dataframe()
    assert list(df.columns[3:]) == list(HEAD_KINDS) and len(df) == 8
    ranking = scores.ranking("induction")
    assert [s for _, s in ranking] == sorted((s for _, s in ranking), reverse=True)
    html = scores.to_html()
    assert "Head detection" in html and "http" not in html
    back = HeadScores.load(scores.save(tmp_path / "h.json"))
    torch.testing.assert_close(back.scores, scores.scores)
    no_repeats = head_scores(tiny_model, ["w1 w2 w3"], kinds=["induction"])
    assert torch.isnan(no_repeats.scores).all()  # nothing to detect: NaN, not 0
    with pytest.raises(MechinterpError, match="head kind"):
        head_scores(tiny_model, kinds=["copying"])
    with pytest.raises(MechinterpError, match="measure"):
        head_scores(tiny_model, PROMPTS, measure="abs")


ZOO = "attn-only-2l"


def test_zoo_card_heads_rank_first():
    model = mechinterp.load(f"zoo:{ZOO}")
    card = mechinterp.zoo.read_json(ZOO, "circuit.json")["heads"]
    scores = head_scores(model, n_probes=32, seed=7)
    for kind in ("previous_token", "induction"):
        named = set(card[kind])
        assert named, kind
        assert set(scores.top(kind, len(named))) == named, (kind, scores.ranking(kind)[:4])


def test_probe_sequences_follow_the_models_bos(tiny_model):
    with_bos = probe_sequences(tiny_model, n=3, seg_len=4, seed=2)
    without = probe_sequences(tiny_model, n=3, seg_len=4, seed=2, bos=False)
    assert with_bos.shape == (3, 9) and without.shape == (3, 8)
    assert torch.equal(without, with_bos[:, 1:]) and torch.equal(without[:, :4], without[:, 4:])
    assert int(with_bos[0, 0]) == tiny_model.tokenizer.bos_token_id


def _big_scores(n_layers=30, n_heads=9):
    gen = torch.Generator().manual_seed(0)
    return HeadScores(scores=torch.rand(len(HEAD_KINDS), n_layers, n_heads, generator=gen), kinds=list(HEAD_KINDS))


def test_plot_and_html_readable_at_30_layers_by_9_heads():
    import matplotlib.pyplot as plt

    scores = _big_scores()
    fig = scores.plot()
    width, height = fig.get_size_inches()
    assert height <= 11.0 and width <= 22.0  # 0.3 x 0.45 inch cells (0.5 x 0.55 below 17 layers)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 4
    for ax, kind in zip(panels, HEAD_KINDS):
        assert [t.get_text() for t in ax.get_yticklabels()] == [str(i) for i in range(30)]  # every layer labelled
        texts = [t.get_text() for t in ax.texts]
        best = scores.ranking(kind)[:5]
        assert texts == [f"{v:.2f}" for _, v in best]  # only the top 5 are written, best first
        assert len(ax.patches) == 5  # and outlined
    plt.close("all")
    table = scores.top_table(10)
    assert len(table) == 10 and table[0]["induction"].startswith(scores.top("induction")[0] + " ")
    html = scores.to_html()
    assert "Top 10 heads of 270" in html and "<details><summary>All 270 heads</summary>" in html


def test_small_plot_writes_every_cell(tiny_model):
    import matplotlib.pyplot as plt

    fig = head_scores(tiny_model, n_probes=4, seg_len=5).plot()
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert all(len(ax.texts) == 8 and not ax.patches for ax in panels)
    plt.close("all")
