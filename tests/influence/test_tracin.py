"""TracIn equals captum's TracInCP on the same checkpoints, training set and queries."""

from __future__ import annotations

import pytest
import torch

from mechinterp.errors import MechinterpError
from mechinterp.influence import load_checkpoints, tracin
from mechinterp.influence.planted import make_data, make_model, train


class _SeqLoss:
    """Per-sequence summed next-token loss (captum: a 'per-example' loss, reduction='none')."""

    reduction = "none"

    def __call__(self, logits, tokens):
        return -logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0].sum(1)


class _QueryLoss:
    reduction = "none"

    def __call__(self, logits, targets):
        return -logits[:, -1].log_softmax(-1).gather(-1, targets[:, None])[:, 0]


def test_tracin_equals_captum_tracincp(tmp_path):
    from captum.influence import TracInCP
    from torch.utils.data import TensorDataset

    data = make_data(n_subjects=6, n_planted=3, copies=2)
    model = make_model(data.d_vocab, d_model=16)
    ckpts = train(model, data.tokens, steps=20, lr=1e-2, keep=2)
    paths = []
    for i, (state, lr) in enumerate(ckpts):
        path = tmp_path / f"step-{i}.pt"
        torch.save({"state_dict": state, "lr": lr * (i + 1), "step": i}, path)
        paths.append(str(path))

    def load(net, path):
        blob = torch.load(path, weights_only=True)
        net.load_state_dict(blob["state_dict"])
        return blob["lr"]

    prompts = torch.tensor([p for p, _ in data.queries])
    targets = torch.tensor([t for _, t in data.queries])
    peer = TracInCP(
        make_model(data.d_vocab, d_model=16), TensorDataset(data.tokens, data.tokens), paths, load,
        loss_fn=_SeqLoss(), test_loss_fn=_QueryLoss(), batch_size=16,
    )
    want = peer.influence((prompts, targets))
    ours = tracin(model, load_checkpoints(tmp_path), data.tokens, list(zip(prompts, targets.tolist())),
                  params="all", projection_dim=None, per_token=False)
    assert ours.meta["lrs"] == [1e-2, 2e-2]
    torch.testing.assert_close(ours.scores, want.float(), rtol=2e-4, atol=1e-5 * float(want.abs().max()))


def test_tracin_rejects_bad_checkpoints(tmp_path):
    data = make_data(n_subjects=2, n_planted=1, copies=1)
    model = make_model(data.d_vocab, d_model=16)
    query = [(torch.tensor(data.queries[0][0]), data.queries[0][1])]
    with pytest.raises(MechinterpError, match="No checkpoints"):
        tracin(model, [], data.tokens, query)
    with pytest.raises(MechinterpError, match="does not fit"):
        tracin(model, [({"embed.W_E": torch.zeros(3, 3)}, 1e-3)], data.tokens, query)
    with pytest.raises(MechinterpError, match="pair"):
        tracin(model, [model.state_dict()], data.tokens, query)
    with pytest.raises(MechinterpError, match="step-"):
        load_checkpoints(tmp_path)


def test_toy_lm_training_keeps_checkpoints_for_tracin(tmp_path):
    """The zoo script's keep_checkpoints option writes what load_checkpoints reads (with each step's lr)."""
    from mechinterp.zoo.train import toy_lm

    model = toy_lm.make_model(seed=0, tokenizer_dir=tmp_path / "tok")
    toy_lm._train(model, steps=2, seed=0, keep_checkpoints=2, checkpoint_dir=tmp_path / "ck")
    ckpts = load_checkpoints(tmp_path / "ck")
    warm = toy_lm.RECIPE["lr"] / toy_lm.RECIPE["warmup"]
    assert [lr for _, lr in ckpts] == pytest.approx([warm, 2 * warm])
    torch.testing.assert_close(ckpts[-1][0]["blocks.0.attn.W_Q"], model.state_dict()["blocks.0.attn.W_Q"])
    assert toy_lm.checkpoint_steps(10, 3) == {3, 7, 10} and toy_lm.checkpoint_steps(10, 0) == set()
