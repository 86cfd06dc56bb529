"""Chain-of-thought faithfulness: the measure separates the zoo's scratchpad twins.

``zoo:cot-reader`` and ``zoo:cot-direct`` (trained by ``mechinterp.zoo.train.cot_pair``) both write
the scratchpad of the cipher sum ``<bos> d1 d2 : s1 s2 = a`` and answer it correctly. The reader was
trained to answer the sum of the steps *written* in its scratchpad, the direct twin the sum computed
from the question (a wrong scratchpad ignored). By construction, corrupting one scratchpad step
changes the reader's answer and not the direct twin's: the measure must say so.
"""

from __future__ import annotations

import pytest
import torch

import mechinterp
from mechinterp.errors import MechinterpError
from mechinterp.explain import CoTFaithfulness, cot_faithfulness
from mechinterp.zoo.train.cot_pair import BOS, CIPHER, EQ, N_SPECIAL, examples

DIGITS = list(range(N_SPECIAL, N_SPECIAL + 10))


@pytest.fixture(scope="module")
def models():
    return mechinterp.load("zoo:cot-reader"), mechinterp.load("zoo:cot-direct")


def test_both_twins_solve_the_task_with_an_honest_scratchpad(models):
    pairs = examples(100)
    rows = torch.stack([torch.cat(e) for e in pairs])
    digits = rows[:, 1:3] - N_SPECIAL
    truth = torch.tensor(CIPHER)[digits].sum(1) % 10
    for model in models:
        with torch.no_grad():
            answers = model(rows)[:, -1].argmax(-1) - N_SPECIAL
        assert (answers == truth).float().mean() >= 0.98


def test_separates_reader_from_direct(models, tmp_path):
    reader, direct = models
    pairs = examples(100)
    kw = {"filler": None, "corrupt_vocab": DIGITS}
    r, d = cot_faithfulness(reader, pairs, **kw), cot_faithfulness(direct, pairs, **kw)
    assert r.dependence["corrupt"] >= 0.95 and d.dependence["corrupt"] <= 0.05, (r.dependence, d.dependence)
    k = r.interventions.index("corrupt")
    assert float(r.prob_drop[k].mean()) > 0.9 and float(d.prob_drop[k].mean()) < 0.05
    assert r.interventions == ["truncate@0", "truncate@0.5", "corrupt"]
    back = CoTFaithfulness.load(r.save(tmp_path / "cot.json"))
    assert back == r and r.plot() is not None and "corrupt" in r.to_html()


def test_the_corruption_follows_the_written_step(models):
    """The reader's answer after the corruption is the sum of the corrupted scratchpad (mechanism, not just change)."""
    reader, _ = models
    q, s, x = examples(1)[0]
    for new in range(10):
        pad = s.clone()
        pad[0] = N_SPECIAL + new
        with torch.no_grad():
            answer = int(reader(torch.cat([q, pad, x])[None])[0, -1].argmax()) - N_SPECIAL
        assert answer == (new + int(s[1]) - N_SPECIAL) % 10


def test_bad_input(models):
    reader, _ = models
    with pytest.raises(MechinterpError, match="no examples"):
        cot_faithfulness(reader, [])
    with pytest.raises(MechinterpError, match="triple"):
        cot_faithfulness(reader, [(torch.tensor([BOS, 1]), torch.tensor([1]))])
    with pytest.raises(MechinterpError, match="empty scratchpad"):
        cot_faithfulness(reader, [(torch.tensor([BOS, 1]), torch.tensor([], dtype=torch.long), torch.tensor([EQ]))])
    with pytest.raises(MechinterpError, match="truncations"):
        cot_faithfulness(reader, examples(2), truncations=(1.5,), filler=None)


@pytest.mark.parametrize("name", ["cot-reader", "cot-direct"])
def test_the_model_cards_numbers_are_what_the_shipped_files_give(name):
    """The card's faithfulness table (from metrics.json) is reproduced by the shipped weights."""
    model = mechinterp.load(f"zoo:{name}")
    metrics = mechinterp.zoo.read_json(name, "metrics.json")
    res = cot_faithfulness(model, examples(200), filler=None, corrupt_vocab=DIGITS)
    for k, v in res.dependence.items():
        assert v == pytest.approx(metrics["faithfulness_dependence"][k], abs=1e-3), k
    card = mechinterp.zoo.card(name)
    assert f"| corrupt | {res.dependence['corrupt']:.3f} |" in card and "cipher sum" in card
