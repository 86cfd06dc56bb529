"""core.ablation: "resample" means one thing (a seeded derangement) in patching and in circuits."""

from __future__ import annotations

import pytest
import torch

from mechinterp.circuits import patch_edges, prepare_edge_patching
from mechinterp.core.ablation import ABLATION_KINDS, resample_permutation
from mechinterp.errors import MechinterpError
from mechinterp.patching import activation_patch


@pytest.mark.parametrize("n", [2, 3, 5, 16])
def test_a_seeded_derangement(n):
    for seed in range(20):
        perm = resample_permutation(n, seed)
        assert sorted(perm.tolist()) == list(range(n))
        assert bool((perm != torch.arange(n)).all()), "a prompt kept its own activation"
        assert torch.equal(perm, resample_permutation(n, seed))
    assert len({tuple(resample_permutation(5, s).tolist()) for s in range(30)}) > 5  # seeds matter


def test_one_prompt_has_no_other():
    with pytest.raises(MechinterpError, match="at least 2 prompts"):
        resample_permutation(1)
    assert set(ABLATION_KINDS) == {"zero", "mean", "resample", "corrupted"}


def _tokens(model, n=4, width=6):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(3, model.cfg.d_vocab, (n, width), generator=gen)


def test_circuits_resample_is_the_permuted_run(tiny_model):
    tokens = _tokens(tiny_model)
    setup = prepare_edge_patching(tiny_model, tokens, ablation="resample", seed=3)
    perm = resample_permutation(4, 3)
    torch.testing.assert_close(setup.patched, setup.clean[perm])
    # every edge removed: each prompt's receivers read prompt perm[i]'s senders, i.e. the run on tokens[perm]
    full = patch_edges(tiny_model, setup, setup.graph.real.float()[None])[0]
    with torch.no_grad():
        torch.testing.assert_close(full, tiny_model(tokens[perm]), atol=1e-4, rtol=1e-4)


def test_patching_resample_pairs_prompts_like_circuits(tiny_model):
    tokens = _tokens(tiny_model)
    metric = lambda logits: logits[:, -1, 5]  # noqa: E731 - one number per prompt
    res = activation_patch(tiny_model, tokens, None, metric, site="resid_pre", by="layer", ablation="resample",
                           seed=3, normalise=False)
    # patching the whole residual stream before layer 0 is running on the permuted prompts
    with torch.no_grad():
        want = float(metric(tiny_model(tokens[resample_permutation(4, 3)])).mean())
    assert float(res.raw[0]) == pytest.approx(want, abs=1e-4)
