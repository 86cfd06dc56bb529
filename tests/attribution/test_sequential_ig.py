"""Sequential IG: per-token completeness (= leave-one-out), equality with one-token IG, options."""

from __future__ import annotations

import pytest
import torch

from mechinterp.attribution import Contrast, NextToken, attribute
from mechinterp.core.hooks import active_hooks
from mechinterp.errors import MechinterpError

PROMPT = "w1 w5 w9 w2 w7 w3"


@pytest.mark.parametrize("baseline", ["pad", "mean"])
@pytest.mark.parametrize("target", [NextToken("w4"), Contrast("w4", "w8")])
def test_each_token_sums_to_its_leave_one_out_drop(tiny_model, baseline, target):
    sig = attribute(tiny_model, PROMPT, target, method="sequential_ig", baseline=baseline, n_steps=48, warn=False)
    occ = attribute(tiny_model, PROMPT, target, method="occlusion", replacement=baseline, warn=False)
    torch.testing.assert_close(sig.scores, occ.scores.float(), atol=2e-3, rtol=1e-3)
    assert max(abs(d) for d in sig.metadata["token_deltas"][0]) < 2e-3
    assert sig.scores[0, 0] == 0  # BOS is not moved


def test_one_token_path_equals_ig_with_a_baseline_that_differs_there_only(tiny_model):
    tokens = tiny_model.to_tokens(PROMPT)[0]
    x = tiny_model.embed(tokens.unsqueeze(0))[0].detach()
    mean = tiny_model.W_E.detach().mean(0)
    sig = attribute(tiny_model, PROMPT, "w4", method="sig", baseline="mean", n_steps=16, warn=False)
    for i in (2, 4):
        only_i = x.clone()
        only_i[i] = mean
        ig = attribute(tiny_model, PROMPT, "w4", method="ig", baseline=only_i, n_steps=16, warn=False)
        assert float(ig.scores[0, i]) == pytest.approx(float(sig.scores[0, i]), rel=1e-4, abs=1e-5)
        assert float(ig.scores[0].abs().sum() - ig.scores[0, i].abs()) < 1e-6  # IG moves token i alone


def test_chunking_and_first_token(tiny_model):
    a = attribute(tiny_model, PROMPT, "w4", method="sig", n_steps=12, internal_batch_size=5, warn=False)
    b = attribute(tiny_model, PROMPT, "w4", method="sig", n_steps=12, internal_batch_size=64, warn=False)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-6, rtol=1e-5)
    no_bos = tiny_model.to_tokens(PROMPT, prepend_bos=False)[0]
    with pytest.warns(Warning):
        kept = attribute(tiny_model, no_bos, "w4", method="sig", n_steps=8, warn=False)
    assert kept.scores[0, 0] == 0 and kept.metadata["first_token_kept"]
    assert not active_hooks(tiny_model)


def test_adaptive_rule_is_refused(tiny_model):
    with pytest.raises(MechinterpError, match="fixed rule"):
        attribute(tiny_model, PROMPT, "w4", method="sig", rule="adaptive")
