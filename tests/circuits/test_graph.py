"""Graph: edge counts, names matching the zoo's circuit.json, receivers merging into nodes."""

from __future__ import annotations

import pytest
import torch

from mechinterp.circuits import Graph
from mechinterp.errors import MechinterpError
from mechinterp.zoo import read_json


def test_edge_count_closed_form():
    # senders before layer l: 1 + l (H + 1); q/k/v of layer l read them; MLP l also reads the layer's heads.
    L, H = 3, 2
    g = Graph.build(L, H, has_mlp=True)
    expected = sum(3 * H * (1 + l * (H + 1)) + (1 + l * (H + 1) + H) for l in range(L)) + (1 + L * (H + 1))
    assert g.n_edges == expected
    assert g.n_senders == 1 + L * (H + 1) and g.n_receivers == L * (3 * H + 1) + 1
    attn_only = Graph.build(2, 4, has_mlp=False)
    assert attn_only.n_edges == 3 * 4 * 1 + 3 * 4 * 5 + 9
    assert not Graph.build(1, 1, parallel=True).real[Graph.build(1, 1).sender_index("L0H0"), 3]


@pytest.mark.parametrize("name", ["tracr-reverse", "tracr-frac-prevs", "tracr-prev-tokens"])
def test_zoo_circuit_names_resolve(name):
    import mechinterp

    g = Graph.from_model(mechinterp.load(f"zoo:{name}"))
    circuit = read_json(name, "circuit.json")
    for key in ("edges", "weight_edges"):
        mask = g.edge_mask(circuit[key])
        assert int(mask.sum()) == len(circuit[key])
    assert set(circuit["nodes"]) <= set(g.nodes)


def test_head_receiver_expands_to_qkv_and_node_matrix():
    g = Graph.build(2, 2)
    mask = g.edge_mask([("L0H0", "L1H1")])
    assert int(mask.sum()) == 3
    nodes = g.node_matrix(mask.float())
    assert nodes[g.sender_index("L0H0"), g.nodes.index("L1H1")] == 3 and nodes.sum() == 3


def test_bad_names_and_non_edges_raise():
    g = Graph.build(2, 2)
    with pytest.raises(MechinterpError, match="Unknown sender"):
        g.edge_mask([("L9H9", "logits")])
    with pytest.raises(MechinterpError, match="not an edge"):
        g.edge_mask([("L1H0", "L0H0.q")])
    with pytest.raises(MechinterpError, match="Unknown receiver"):
        g.edge_mask([("embed", "L0H0.x")])


def test_gqa_graph_needs_no_flag_and_keeps_per_head_inputs(tiny_gqa):
    model, _, _ = tiny_gqa
    g = Graph.from_model(model)
    assert g.grouped and g.n_key_value_heads == 2
    plain = Graph.build(2, 4)  # same receivers and edges as a model with one k/v per head
    assert g.receivers == plain.receivers and torch.equal(g.real, plain.real)
    assert [g.kv_heads(h) for h in range(4)] == [[0, 1], [0, 1], [2, 3], [2, 3]]
    assert Graph.from_dict(g.to_dict()).n_key_value_heads == 2
    # a model loaded with TL's own ungroup flag gives the same graph (the flag used to be ignored)
    model.cfg.ungroup_grouped_query_attention = True
    try:
        assert Graph.from_model(model).n_key_value_heads == 2
    finally:
        model.cfg.ungroup_grouped_query_attention = False


def test_kv_heads_without_gqa_and_bad_group_sizes():
    assert Graph.build(1, 3).kv_heads(2) == [2] and not Graph.build(1, 3).grouped
    assert not Graph.build(1, 4, n_key_value_heads=4).grouped
    with pytest.raises(MechinterpError, match="divide"):
        Graph.build(1, 4, n_key_value_heads=3)
    with pytest.raises(MechinterpError, match="head must be"):
        Graph.build(1, 4, n_key_value_heads=2).kv_heads(4)
