"""Patching on SmolLM2-135M-Instruct (30 layers, 9 heads, 3 key/value heads) with IOI prompts.

The prompts come from ``benchmarks/real_prompts.py`` (shared with the patching benchmark): eight clean /
corrupted pairs written with natural punctuation, single-token names, the corrupted prompt
swapping the two names everywhere (so positions 1, 3 and 9 differ and the answer flips).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from mechinterp.core.hooks import assert_no_hooks
from mechinterp.patching import activation_patch

pytestmark = pytest.mark.real

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from real_prompts import ioi_swap_pairs  # noqa: E402

NAME_POSITIONS = (1, 3, 9)  # IO, S1, S2 (no BOS: SmolLM2's tokenizer adds none)


def ioi_pairs(model, n: int = 8):
    """``(clean, corrupted, metric)``: logit(IO) - logit(S) at the last position (``benchmarks/real_prompts.py``)."""
    ct, xt, metric = ioi_swap_pairs(model, n)
    assert ct.shape == xt.shape == (n, 14)
    assert torch.equal((ct != xt).any(0).nonzero().flatten(), torch.tensor(NAME_POSITIONS))
    return ct, xt, metric


@pytest.fixture(scope="module")
def ioi(smollm2):
    return ioi_pairs(smollm2)


def test_the_model_solves_the_prompts(smollm2, ioi):
    clean, corrupted, metric = ioi
    with torch.no_grad():
        assert (metric(smollm2(clean)) > 0).all() and (metric(smollm2(corrupted)) < 0).all()


def test_activation_patching_equals_transformer_lens(smollm2):
    """resid_pre at 3 layers x 3 positions (4 prompts) against TL's generic_activation_patch on the same index."""
    import pandas as pd
    from transformer_lens import patching as tlp

    clean, corrupted, metric = ioi_pairs(smollm2, 4)
    layers, positions = [0, 16, 29], [1, 9, 13]
    ours = activation_patch(smollm2, clean, corrupted, metric, site="resid_pre", by="position", layers=layers,
                            positions=positions, normalise=False)
    index = pd.DataFrame([(l, p) for l in layers for p in positions], columns=["layer", "pos"])
    with torch.no_grad():
        _, cache = smollm2.run_with_cache(clean, names_filter=lambda name: name.endswith("hook_resid_pre"))
        theirs = tlp.generic_activation_patch(
            smollm2, corrupted, cache, lambda logits: metric(logits).mean(), tlp.layer_pos_patch_setter, "resid_pre",
            index_df=index,
        )
    torch.testing.assert_close(ours.raw.flatten(), theirs, atol=1e-5, rtol=0)
    assert float(theirs.abs().max()) > 1  # the sweep moves the logit difference by nats
    assert_no_hooks(smollm2)


def test_signal_moves_from_the_names_to_the_final_position(smollm2, ioi):
    """Early layers: the effect sits at the name positions (nothing at the final one);
    late layers: at the final position (the names no longer matter)."""
    clean, corrupted, metric = ioi
    layers = [0, 8, 16, 26, 29]
    result = activation_patch(smollm2, clean, corrupted, metric, site="resid_pre", by="position", layers=layers)
    values = result.values.abs()  # [layer, pos], 0 = corrupted run, 1 = clean run
    names, final = list(NAME_POSITIONS), values.shape[1] - 1
    for row in values[:3]:  # layers 0, 8, 16
        assert row.argmax().item() in names
        assert row[names].sum() > 0.95 * row.sum() and row[final] < 0.05
    for row in values[3:]:  # layers 26, 29
        assert row.argmax().item() == final and row[final] > 0.6
        assert row[final] > 3 * row[:final].max()
    assert_no_hooks(smollm2)


def test_every_patching_method_runs_on_bf16_smollm2(smollm2_bf16):
    """The contract table on the real model in bf16 (one 5-token pair and the first and last
    layers of the ``*_every`` sweeps, so that it stays cheap on one CPU thread):
    float32 results, finite, no hooks left, and the model left in bf16."""
    from mechinterp.patching import attribution_patch, causal_trace, compare_with_exact, patch_block_every, patch_heads_every, path_patch

    model = smollm2_bf16
    clean, corrupted = model.to_tokens(["The capital of France is"]), model.to_tokens(["The capital of Italy is"])
    assert clean.shape == corrupted.shape == (1, 5)
    paris, rome = model.to_single_token(" Paris"), model.to_single_token(" Rome")

    def metric(logits):
        return logits[:, -1, paris] - logits[:, -1, rome]

    calls = {
        "activation_patch": lambda: activation_patch(model, clean, corrupted, metric, layers=[0, 15, 29]),
        "activation_patch_head": lambda: activation_patch(model, clean, corrupted, metric, site="z", by="head", layers=[0, 29]),
        "ablation": lambda: activation_patch(model, clean, corrupted, metric, site="attn_out", ablation="mean", layers=[0, 29]),
        "block_every": lambda: patch_block_every(model, clean, corrupted, metric, layers=[0, 29]),
        "heads_every": lambda: patch_heads_every(model, clean, corrupted, metric, layers=[0, 29]),
        "path_patch": lambda: path_patch(model, clean, corrupted, metric, receivers=[(29, 0, "q"), (29, 2, "k")], senders=[(27, 1)]),
        "causal_trace": lambda: causal_trace(model, clean, [3], metric, n_samples=1),
        "attribution_patch": lambda: attribution_patch(model, clean, corrupted, metric, sites="resid_pre"),
        "attribution_ig": lambda: attribution_patch(model, clean, corrupted, metric, sites="z", ig_steps=2),
        "compare_with_exact": lambda: compare_with_exact(model, clean, corrupted, metric, site="mlp_out"),
    }
    results = {}
    for name, call in calls.items():
        result = results[name] = call()
        raw = [result.exact.raw, result.approx.raw] if hasattr(result, "exact") else [result.raw]
        for tensor in raw:
            assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all(), name
        assert_no_hooks(model)
    assert next(model.parameters()).dtype == torch.bfloat16 and model.cfg.dtype == torch.bfloat16
    assert float(results["activation_patch"].values[0, 3]) > 0.5  # layer 0: the country token carries the answer
