"""The real-model tier for circuits: SmolLM2-135M-Instruct (30 layers, 9 heads, 3 key/value heads: GQA).

An IOI-style prompt set (``benchmarks/real_prompts.py``, shared with the benchmark) from single-token names (clean "When Mary and John went to
the store, John gave a drink to" -> " Mary"; corrupted: the second " John" replaced by a third
name, ABC style); metric: logit(indirect object) - logit(subject).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mechinterp.circuits import discover, eap_scores, exact_scores, faithfulness, patch_edges, prepare_edge_patching
from mechinterp.core.hooks import assert_no_hooks

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from real_prompts import ioi_abc_prompts  # noqa: E402

pytestmark = pytest.mark.real

N = 4


def ioi_prompts(model, n=N, seed=0):
    """Clean/corrupted ``[n, 14]`` tokens and the logit-difference metric (``benchmarks/real_prompts.py``)."""
    return ioi_abc_prompts(model, n, seed)


@pytest.fixture(scope="module")
def ioi(smollm2):
    clean, corrupted, metric = ioi_prompts(smollm2)
    with torch.no_grad():
        assert (metric(smollm2(clean)) > 0).all()  # the model solves every clean prompt
    setup = prepare_edge_patching(smollm2, clean, corrupted)
    task = SimpleNamespace(name="ioi-abc", clean_tokens=clean, corrupted_tokens=corrupted, metric=metric)
    return task, setup


@pytest.fixture(scope="module")
def eap_fp32(smollm2, ioi):
    task, setup = ioi
    return eap_scores(smollm2, setup, task.metric)


def _no_flags(model):
    assert_no_hooks(model)
    cfg = model.cfg
    assert not (cfg.use_split_qkv_input or cfg.use_hook_mlp_in or cfg.ungroup_grouped_query_attention)


def test_eap_ig_runs_on_gqa_and_its_top_edges_are_faithful(smollm2, ioi):
    task, setup = ioi
    g = setup.graph
    assert g.grouped and g.n_key_value_heads == 3 and g.real.shape == (1 + 30 * 10, 30 * 28 + 1)
    circuit = discover(smollm2, task, "eap-ig-inputs", setup=setup, steps=3)
    s = circuit.scores
    assert s.shape == g.real.shape and torch.isfinite(s).all() and (s[~g.real] == 0).all()
    assert (s[g.real] != 0).float().mean() > 0.5
    # the top 2% of edges keep far more of the clean-vs-corrupted gap than 2% chosen at random
    n = int(0.02 * g.n_edges)
    scores = s.abs() * g.real
    rand = torch.rand(g.real.shape, generator=torch.Generator().manual_seed(0)) * g.real
    keep = torch.stack([circuit.top_n(n).selected, (rand >= rand[g.real].kthvalue(g.n_edges - n + 1).values) & g.real])
    assert int(keep[1].sum()) == n and scores[keep[0]].sum() > scores[keep[1]].sum()
    f_top, f_rand = faithfulness(smollm2, setup, task.metric, keep).tolist()
    assert f_top > 0.5 and f_top > f_rand + 0.4, (f_top, f_rand)
    _no_flags(smollm2)


EDGES = [("embed", "L0H4.k"), ("L2H1", "L9H5.v"), ("MLP3", "L20H8.q"), ("L14H0", "MLP22"), ("L27H6", "logits"), ("MLP29", "logits")]


def _hook_reference(model, setup, metric, edges):
    """Per edge: one TransformerLens run whose hook adds (corrupted - clean output of s) to r's input."""
    cfg = model.cfg
    outs = []
    wanted = {"blocks.0.hook_resid_pre"} | {f"blocks.{l}.{h}" for l in range(cfg.n_layers) for h in ("attn.hook_z", "hook_mlp_out")}
    for tokens in (setup.tokens, setup.corrupted_tokens):
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in wanted)
        out = {"embed": cache["blocks.0.hook_resid_pre"]}
        for layer in range(cfg.n_layers):
            z = cache[f"blocks.{layer}.attn.hook_z"]  # [batch pos head_index d_head]
            out.update({f"L{layer}H{h}": z[:, :, h] @ model.blocks[layer].attn.W_O[h] for h in range(cfg.n_heads)})
            out[f"MLP{layer}"] = cache[f"blocks.{layer}.hook_mlp_out"]
        outs.append({k: v for k, v in out.items() if k in {s for s, _ in edges}})
        del cache
    with torch.no_grad():
        base = float(metric(model(setup.tokens)).mean())
    cfg.use_split_qkv_input = cfg.use_hook_mlp_in = cfg.ungroup_grouped_query_attention = True  # TL's own modes
    try:
        ref = []
        for s, r in edges:
            delta = outs[1][s] - outs[0][s]  # [batch pos d_model]
            node, _, part = r.partition(".")
            if part:
                layer, head = (int(x) for x in node[1:].split("H"))
                name = f"blocks.{layer}.hook_{part}_input"

                def fn(x, hook, head=head, delta=delta):  # [batch pos head_index d_model]
                    x = x.clone()
                    x[:, :, head] += delta
                    return x
            else:
                name = f"blocks.{cfg.n_layers - 1}.hook_resid_post" if r == "logits" else f"blocks.{int(r[3:])}.hook_mlp_in"

                def fn(x, hook, delta=delta):  # [batch pos d_model]
                    return x + delta
            with torch.no_grad():
                ref.append(float(metric(model.run_with_hooks(setup.tokens, fwd_hooks=[(name, fn)])).mean()) - base)
    finally:
        cfg.use_split_qkv_input = cfg.use_hook_mlp_in = cfg.ungroup_grouped_query_attention = False
    return torch.tensor(ref)


def test_exact_equals_hook_patching_on_gqa(smollm2, ioi):
    task, setup = ioi
    g = setup.graph
    pick = g.edge_mask(EDGES)
    ours = exact_scores(smollm2, setup, task.metric, candidates=pick)
    got = torch.tensor([float(ours[g.sender_index(s), g.receiver_index(r)]) for s, r in EDGES])
    ref = _hook_reference(smollm2, setup, task.metric, EDGES)
    assert ref.abs().max() > 0.01
    torch.testing.assert_close(got, ref, atol=2e-4, rtol=1e-3)
    assert (ours[~pick] == 0).all()
    _no_flags(smollm2)


def test_bf16_smollm2_eap_agrees_with_float32(smollm2_bf16, ioi, eap_fp32):
    task, setup = ioi
    half = prepare_edge_patching(smollm2_bf16, setup.tokens, setup.corrupted_tokens)
    eap = eap_scores(smollm2_bf16, half, task.metric)
    real = setup.graph.real
    assert eap.dtype == torch.float32 and torch.isfinite(eap).all()
    corr = torch.corrcoef(torch.stack([eap[real], eap_fp32[real]]))[0, 1]
    top = set(torch.topk(eap_fp32[real].abs(), 50).indices.tolist())
    overlap = len(top & set(torch.topk(eap[real].abs(), 50).indices.tolist())) / 50
    assert corr > 0.95 and overlap > 0.6, (float(corr), overlap)
    out = patch_edges(smollm2_bf16, half, real.float())[0]  # every edge patched: the corrupted run, up to bf16 rounding
    with torch.no_grad():
        corrupted, clean = task.metric(smollm2_bf16(setup.corrupted_tokens)), task.metric(smollm2_bf16(setup.tokens))
    assert (task.metric(out) - corrupted).abs().max() < 0.3 and (clean - corrupted).abs().min() > 1.0
    _no_flags(smollm2_bf16)


def test_discover_on_the_packaged_ioi_task(smollm2):
    """End to end with mechinterp.tasks' BPE-ready IOI prompts: no flag, no hand-built tokens."""
    import mechinterp

    task = mechinterp.tasks.load("ioi", smollm2, n=4, seed=0)
    circuit = discover(smollm2, task, "eap")
    g = circuit.graph
    assert g.grouped and torch.isfinite(circuit.scores).all() and circuit.scores[g.real].abs().max() > 0.1
    assert circuit.info["model_dtype"] == "float32" and circuit.top_n(10).n_edges == 10
    _no_flags(smollm2)
