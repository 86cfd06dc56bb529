"""Chain-of-thought faithfulness: the measure separates a model that reads its scratchpad from one that does not.

Two tiny models are trained here on the same sequences ``BOS x y : s =`` (digits x, y; the
scratchpad s restates x, and half the time is a random digit instead). The *reader* is
trained to answer s (it must read the scratchpad); the *direct* model to answer x (the
answer is computable from the question; the scratchpad is present but not needed). By
construction, corrupting the scratchpad changes the reader's answer and not the direct
model's.
"""

from __future__ import annotations

import pytest
import torch

from mechinterp.errors import MechinterpError
from mechinterp.explain import CoTFaithfulness, cot_faithfulness

BOS, COLON, EQ, DOT = 10, 11, 12, 13


def _data(n, gen):
    x, y = torch.randint(0, 10, (n,), generator=gen), torch.randint(0, 10, (n,), generator=gen)
    noisy = torch.rand(n, generator=gen) < 0.5
    s = torch.where(noisy, torch.randint(0, 10, (n,), generator=gen), x)
    seq = torch.stack([torch.full_like(x, BOS), x, y, torch.full_like(x, COLON), s, torch.full_like(x, EQ)], 1)
    return seq, x, s


def _train(answer_is_scratchpad: bool, steps: int = 100):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=1, d_model=32, n_heads=2, d_head=16, n_ctx=8, d_vocab=14, attn_only=True,
                                  normalization_type="LN", seed=0, device="cpu")
    model = HookedTransformer(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        seq, x, s = _data(128, gen)
        loss = torch.nn.functional.cross_entropy(model(seq)[:, -1], s if answer_is_scratchpad else x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


@pytest.fixture(scope="module")
def models():
    return _train(True), _train(False)


def _examples(n=64):
    seq, _, _ = _data(n, torch.Generator().manual_seed(1))
    clean = seq.clone()
    clean[:, 4] = clean[:, 1]  # an honest scratchpad: s = x
    return [(row[:4], row[4:5], row[5:]) for row in clean]


def test_separates_reader_from_direct(models, tmp_path):
    reader, direct = models
    examples = _examples()
    for model in models:  # both solve the task with an honest scratchpad
        with torch.no_grad():
            answers = model(torch.stack([torch.cat(e) for e in examples]))[:, -1].argmax(-1)
        assert (answers == torch.stack([e[0][1] for e in examples])).float().mean() >= 0.95
    kw = {"filler": DOT, "corrupt_vocab": range(10)}
    r, d = cot_faithfulness(reader, examples, **kw), cot_faithfulness(direct, examples, **kw)
    assert r.dependence["corrupt"] >= 0.9 and d.dependence["corrupt"] <= 0.1, (r.dependence, d.dependence)
    assert r.prob_drop[r.interventions.index("corrupt")].mean() > 0.5
    assert r.interventions == ["truncate@0", "truncate@0.5", "corrupt", "filler"]
    # one token of scratchpad: truncating to half keeps nothing, as truncating to 0
    torch.testing.assert_close(r.changed[0], r.changed[1])
    back = CoTFaithfulness.load(r.save(tmp_path / "cot.json"))
    assert back == r and r.plot() is not None and "corrupt" in r.to_html()


def test_bad_input(models):
    reader, _ = models
    with pytest.raises(MechinterpError, match="no examples"):
        cot_faithfulness(reader, [])
    with pytest.raises(MechinterpError, match="triple"):
        cot_faithfulness(reader, [(torch.tensor([BOS, 1]), torch.tensor([1]))])
    with pytest.raises(MechinterpError, match="empty scratchpad"):
        cot_faithfulness(reader, [(torch.tensor([BOS, 1]), torch.tensor([], dtype=torch.long), torch.tensor([EQ]))])
    with pytest.raises(MechinterpError, match="truncations"):
        cot_faithfulness(reader, _examples(2), truncations=(1.5,), filler=DOT)
