"""Exact edge scores equal one TransformerLens hook-patched run per edge (with and without grouped-query attention)."""

from __future__ import annotations

import pytest
import torch

from mechinterp.circuits import exact_scores
from mechinterp.core.hooks import assert_no_hooks


def _hook_patched_scores(model, setup, metric, edges):
    """Reference: for each edge s -> r, a plain TL run whose hook adds (corrupted - clean output of s) to r's input.

    Only r's input changes and s writes before r reads, so s's output in that run is its clean output.
    Receivers use TL's own split-input hooks; on a GQA model TL's ``ungroup_grouped_query_attention``
    gives head h its own key/value input.
    """
    g, cfg = setup.graph, model.cfg
    outs = {}
    for name, tokens in (("clean", setup.tokens), ("corr", setup.corrupted_tokens)):
        _, cache = model.run_with_cache(tokens)
        out = {"embed": cache["blocks.0.hook_resid_pre"]}
        for layer in range(cfg.n_layers):
            z = cache[f"blocks.{layer}.attn.hook_z"]  # [batch pos head_index d_head]
            for h in range(cfg.n_heads):
                out[f"L{layer}H{h}"] = z[:, :, h] @ model.blocks[layer].attn.W_O[h]
            out[f"MLP{layer}"] = cache[f"blocks.{layer}.hook_mlp_out"]
        outs[name] = out
    with torch.no_grad():
        base = float(metric(model(setup.tokens)).mean())
    saved = (cfg.use_split_qkv_input, cfg.use_hook_mlp_in, cfg.ungroup_grouped_query_attention)
    cfg.use_split_qkv_input = cfg.use_hook_mlp_in = True
    cfg.ungroup_grouped_query_attention = g.grouped
    scores = {}
    try:
        for s, r in edges:
            delta = outs["corr"][s] - outs["clean"][s]  # [batch pos d_model]
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
                logits = model.run_with_hooks(setup.tokens, fwd_hooks=[(name, fn)])
            scores[(s, r)] = float(metric(logits).mean()) - base
    finally:
        cfg.use_split_qkv_input, cfg.use_hook_mlp_in, cfg.ungroup_grouped_query_attention = saved
    return scores


@pytest.mark.parametrize("fixture", ["tiny_setup", "tiny_gqa"])
def test_exact_equals_hook_patching_on_every_edge(fixture, request):
    model, setup, metric = request.getfixturevalue(fixture)
    g = setup.graph
    edges = [(g.senders[i], g.receivers[j]) for i, j in torch.nonzero(g.real).tolist()]
    ours = exact_scores(model, setup, metric, chunk=16)
    ref = _hook_patched_scores(model, setup, metric, edges)
    got = torch.tensor([float(ours[g.sender_index(s), g.receiver_index(r)]) for s, r in edges])
    want = torch.tensor([ref[e] for e in edges])
    assert want.abs().max() > 0.05  # the edges do something
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    assert_no_hooks(model)
    assert not (model.cfg.use_split_qkv_input or model.cfg.ungroup_grouped_query_attention)


def test_exact_candidates_score_only_those_edges(tiny_gqa):
    model, setup, metric = tiny_gqa
    g = setup.graph
    pick = g.edge_mask([("L0H1", "L1H2.k"), ("embed", "L1H3.v"), ("MLP1", "logits")])
    part = exact_scores(model, setup, metric, candidates=pick)
    full = exact_scores(model, setup, metric)
    assert torch.equal(part != 0, pick & (full != 0)) and torch.allclose(part[pick], full[pick], atol=1e-6)
