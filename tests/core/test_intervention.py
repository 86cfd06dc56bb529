"""core/intervention.py: one intervention type, checked against hand-written TL hooks."""

from __future__ import annotations

import pytest
import torch

from mechinterp.core.hooks import assert_no_hooks
from mechinterp.core.intervention import Intervention, write
from mechinterp.errors import MechinterpError


def _logits(model, tokens, hook_name, fn):
    with torch.no_grad(), model.hooks(fwd_hooks=[(hook_name, fn)]):
        return model(tokens)


@pytest.mark.parametrize("mode", ["replace", "add", "scale"])
def test_positions_and_heads_equal_a_hand_written_hook(tiny_model, mode):
    tokens = torch.randint(3, 40, (2, 7), generator=torch.Generator().manual_seed(0))
    value = torch.randn(1, 7, 4, 8, generator=torch.Generator().manual_seed(1))
    iv = Intervention.at("blocks.0.attn.hook_z", value, positions=[2, 5], heads=[1, 3], mode=mode)

    def by_hand(z, hook):  # [batch, pos, head_index, d_head]
        z = z.clone()
        for p in (2, 5):
            for h in (1, 3):
                v = value[:, p, h]
                z[:, p, h] = {"replace": v.expand_as(z[:, p, h]), "add": z[:, p, h] + v, "scale": z[:, p, h] * v}[mode]
        return z

    ours = _logits(tiny_model, tokens, *iv.fwd_hook())
    torch.testing.assert_close(ours, _logits(tiny_model, tokens, "blocks.0.attn.hook_z", by_hand))
    assert not torch.allclose(ours, tiny_model(tokens))
    assert_no_hooks(tiny_model)


def test_a_function_value_and_a_per_prompt_mask(tiny_model):
    """A value computed from the activation itself (as probes' projection), written at each prompt's own position."""
    tokens = torch.randint(3, 40, (2, 6), generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(2, 6, 1, dtype=torch.bool)
    mask[0, 4], mask[1, 2] = True, True
    iv = Intervention("blocks.1.hook_resid_pre", mask, lambda act: -act)

    def by_hand(x, hook):
        x = x.clone()
        x[0, 4], x[1, 2] = -x[0, 4], -x[1, 2]
        return x

    torch.testing.assert_close(_logits(tiny_model, tokens, *iv.fwd_hook()),
                               _logits(tiny_model, tokens, "blocks.1.hook_resid_pre", by_hand))


def test_write_rules():
    act = torch.arange(6.0).view(1, 6)
    mask = torch.tensor([True, False, True, False, False, False])
    assert torch.equal(write(act, mask, torch.tensor(10.0), "replace"), torch.tensor([[10.0, 1, 10, 3, 4, 5]]))
    assert torch.equal(write(act, mask, torch.tensor(1.0), "add"), torch.tensor([[1.0, 1, 3, 3, 4, 5]]))
    assert torch.equal(write(act, None, torch.tensor(2.0), "scale"), act * 2)
    assert write(act, mask, None, "add") is act
    with pytest.raises(MechinterpError, match="mode"):
        Intervention("blocks.0.hook_resid_pre", None, 1.0, mode="multiply")


def test_per_prompt_positions_and_values_equal_a_hand_written_hook(tiny_model):
    """Each prompt's own positions (list of lists or [batch, k]) with a per-prompt value: what steering needs."""
    tokens = torch.randint(3, 40, (3, 6), generator=torch.Generator().manual_seed(3))
    value = torch.randn(3, 1, tiny_model.cfg.d_model, generator=torch.Generator().manual_seed(4))
    where = [[1, 4], [-1], [0]]

    def by_hand(x, hook):
        x = x.clone()
        for b, ps in enumerate(where):
            for p in ps:
                x[b, p] = x[b, p] + value[b, 0]
        return x

    expect = _logits(tiny_model, tokens, "blocks.0.hook_resid_post", by_hand)
    iv = Intervention.at("blocks.0.hook_resid_post", value, positions=where, mode="add")
    torch.testing.assert_close(_logits(tiny_model, tokens, *iv.fwd_hook()), expect)
    same = Intervention.at("blocks.0.hook_resid_post", value, positions=torch.tensor([[1, 4], [5, 5], [0, 0]]), mode="add")
    torch.testing.assert_close(_logits(tiny_model, tokens, *same.fwd_hook()), expect)
    assert not torch.allclose(expect, tiny_model(tokens))
    with pytest.raises(MechinterpError, match="per prompt"):
        _logits(tiny_model, tokens[:2], *iv.fwd_hook())
    with pytest.raises(MechinterpError, match="integer"):
        Intervention.at("blocks.0.hook_resid_post", 1.0, positions=torch.tensor([0.5]))
    assert_no_hooks(tiny_model)


def test_positions_a_pass_does_not_reach_are_skipped():
    """A KV-cached generation step sees one position: a prompt position writes nothing there, -1 writes the new one."""
    act = torch.zeros(2, 1, 3)
    assert torch.equal(Intervention.at("blocks.0.hook_resid_pre", 1.0, positions=[4], mode="add").apply(act), act)
    assert torch.equal(Intervention.at("blocks.0.hook_resid_pre", 1.0, positions=[4, -1], mode="add").apply(act), act + 1)
    assert torch.equal(Intervention.at("blocks.0.hook_resid_pre", 1.0, positions=[[4], [0]], mode="add").apply(act),
                       torch.tensor([[[0.0] * 3], [[1.0] * 3]]))


def test_a_head_outside_the_model_is_an_error():
    with pytest.raises(MechinterpError, match="outside"):
        Intervention.at("blocks.0.attn.hook_z", 0.0, heads=[7]).apply(torch.zeros(1, 3, 4, 2))
