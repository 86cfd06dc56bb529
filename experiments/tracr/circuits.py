"""Ground-truth circuits of the two ACDC tracr models, and a check that they suffice.

ACDC (Conmy et al. 2023, ``acdc/tracr_task/utils.py``: ``get_tracr_reverse_edges`` and
``get_tracr_proportion_edges``) defines the reference circuits as TransformerLens hook
edges ``(receiver hook, receiver index, sender hook, sender index)``. They are copied
here verbatim (head index only; ACDC's other index entries are ``None``) and mapped to
mechinterp's node names: ``hook_embed`` and ``hook_pos_embed`` → ``"embed"``,
``blocks.L.attn.hook_result[h]`` → ``"L{L}H{h}"``, ``blocks.L.hook_{q,k,v}_input[h]`` →
``"L{L}H{h}.{q,k,v}"``, ``blocks.L.hook_mlp_{in,out}`` → ``"MLP{L}"``, the last
``hook_resid_post`` → ``"logits"``. Edges inside one component (``hook_q_input`` →
``hook_q`` → ``hook_result``, ``hook_mlp_in`` → ``hook_mlp_out``) are dropped.

:func:`weight_edges` derives, from the compiled weights alone, every edge along which a
component writes a residual direction that a later component reads (a superset of
ACDC's edges); :func:`circuit_forward` runs the model with only a given edge set (all
other edges zero-ablated, as in ACDC) to show that the circuit reproduces the outputs.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

# (receiver, receiver head, sender, sender head), verbatim from ACDC.
ACDC_EDGES: dict[str, list[tuple[str, int | None, str, int | None]]] = {
    "reverse": [
        ("blocks.3.hook_resid_post", None, "blocks.3.attn.hook_result", 0),
        ("blocks.3.attn.hook_result", 0, "blocks.3.attn.hook_q", 0),
        ("blocks.3.attn.hook_result", 0, "blocks.3.attn.hook_k", 0),
        ("blocks.3.attn.hook_result", 0, "blocks.3.attn.hook_v", 0),
        ("blocks.3.attn.hook_q", 0, "blocks.3.hook_q_input", 0),
        ("blocks.3.attn.hook_k", 0, "blocks.3.hook_k_input", 0),
        ("blocks.3.attn.hook_v", 0, "blocks.3.hook_v_input", 0),
        ("blocks.3.hook_q_input", 0, "blocks.2.hook_mlp_out", None),
        ("blocks.3.hook_k_input", 0, "hook_pos_embed", None),
        ("blocks.3.hook_v_input", 0, "hook_embed", None),
        ("blocks.2.hook_mlp_out", None, "blocks.2.hook_mlp_in", None),
        ("blocks.2.hook_mlp_in", None, "blocks.1.hook_mlp_out", None),
        ("blocks.1.hook_mlp_out", None, "blocks.1.hook_mlp_in", None),
        ("blocks.1.hook_mlp_in", None, "blocks.0.hook_mlp_out", None),
        ("blocks.1.hook_mlp_in", None, "hook_embed", None),
        ("blocks.1.hook_mlp_in", None, "hook_pos_embed", None),
        ("blocks.0.hook_mlp_out", None, "blocks.0.hook_mlp_in", None),
        ("blocks.0.hook_mlp_in", None, "blocks.0.attn.hook_result", 0),
        ("blocks.0.hook_mlp_in", None, "hook_embed", None),
        ("blocks.0.attn.hook_result", 0, "blocks.0.attn.hook_q", 0),
        ("blocks.0.attn.hook_result", 0, "blocks.0.attn.hook_k", 0),
        ("blocks.0.attn.hook_result", 0, "blocks.0.attn.hook_v", 0),
        ("blocks.0.attn.hook_v", 0, "blocks.0.hook_v_input", 0),
        ("blocks.0.hook_v_input", 0, "hook_embed", None),
    ],
    "frac_prevs": [
        ("blocks.1.hook_resid_post", None, "blocks.1.attn.hook_result", 0),
        ("blocks.1.attn.hook_result", 0, "blocks.1.attn.hook_q", 0),
        ("blocks.1.attn.hook_result", 0, "blocks.1.attn.hook_k", 0),
        ("blocks.1.attn.hook_result", 0, "blocks.1.attn.hook_v", 0),
        ("blocks.1.attn.hook_q", 0, "blocks.1.hook_q_input", 0),
        ("blocks.1.attn.hook_k", 0, "blocks.1.hook_k_input", 0),
        ("blocks.1.attn.hook_v", 0, "blocks.1.hook_v_input", 0),
        ("blocks.1.hook_q_input", 0, "hook_embed", None),
        ("blocks.1.hook_q_input", 0, "hook_pos_embed", None),
        ("blocks.1.hook_k_input", 0, "hook_embed", None),
        ("blocks.1.hook_k_input", 0, "hook_pos_embed", None),
        ("blocks.1.hook_v_input", 0, "blocks.0.hook_mlp_out", None),
        ("blocks.0.hook_mlp_out", None, "blocks.0.hook_mlp_in", None),
        ("blocks.0.hook_mlp_in", None, "hook_embed", None),
    ],
}


def _node(hook: str, head: int | None) -> str:
    """mechinterp node name of an ACDC hook (``.q/.k/.v`` kept on head inputs)."""
    if hook in ("hook_embed", "hook_pos_embed"):
        return "embed"
    if hook.endswith("hook_resid_post"):
        return "logits"
    layer = int(re.match(r"blocks\.(\d+)\.", hook).group(1))
    if "hook_mlp" in hook:
        return f"MLP{layer}"
    if m := re.search(r"hook_([qkv])_input$", hook):
        return f"L{layer}H{head}.{m.group(1)}"
    return f"L{layer}H{head}" + ("" if hook.endswith("hook_result") else f"#{hook.rsplit('_', 1)[-1]}")


def acdc_circuit(program: str) -> tuple[list[str], list[list[str]]]:
    """ACDC's circuit for ``program`` as ``(nodes, [[sender, receiver], ...])``."""
    edges: list[list[str]] = []
    for receiver, r_head, sender, s_head in ACDC_EDGES[program]:
        dst, src = _node(receiver, r_head), _node(sender, s_head)
        if "#" in dst or "#" in src or dst.split(".")[0] == src:
            continue  # inside one component
        if [src, dst] not in edges:
            edges.append([src, dst])
    order = {"embed": (-1, 0), "logits": (10**6, 0)}

    def key(n: str) -> tuple[int, int]:
        if n in order:
            return order[n]
        m = re.match(r"L(\d+)H(\d+)|MLP(\d+)", n)
        return (int(m.group(1)), 0) if m.group(1) else (int(m.group(3)), 1)

    nodes = sorted({e.split(".")[0] for edge in edges for e in edge}, key=key)
    edges.sort(key=lambda e: (key(e[1].split(".")[0]), e[1], key(e[0])))
    return nodes, edges


def weight_edges(state: dict[str, Tensor], output_dims: list[int], tol: float = 1e-9) -> list[list[str]]:
    """Every edge along which a component writes a residual direction a later one reads.

    Reads are the non-zero rows of ``W_Q/W_K/W_V/W_in`` (``d_model`` side), writes the
    non-zero columns of ``W_O/W_out``; ``embed`` writes what ``W_E`` and ``W_pos`` write.
    """
    n_layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))

    def nz(t: Tensor, dims: tuple[int, ...]) -> set[int]:
        return set(np.flatnonzero(t.abs().amax(dim=dims).numpy() > tol).tolist())

    writers: list[tuple[str, set[int]]] = [
        ("embed", nz(state["embed.W_E"], (0,)) | nz(state["pos_embed.W_pos"], (0,)))
    ]
    edges: list[list[str]] = []
    for layer in range(n_layers):
        n_heads = state[f"blocks.{layer}.attn.W_Q"].shape[0]
        for h in range(n_heads):
            reads = {c: nz(state[f"blocks.{layer}.attn.W_{c.upper()}"][h], (1,)) for c in "qkv"}
            writes = nz(state[f"blocks.{layer}.attn.W_O"][h], (0,))
            if not writes:
                continue
            for c, dims in reads.items():
                edges += [[src, f"L{layer}H{h}.{c}"] for src, w in writers if w & dims]
            writers.append((f"L{layer}H{h}", writes))
        reads = nz(state[f"blocks.{layer}.mlp.W_in"], (1,))
        writes = nz(state[f"blocks.{layer}.mlp.W_out"], (0,))
        if writes:
            edges += [[src, f"MLP{layer}"] for src, w in writers if w & reads]
            writers.append((f"MLP{layer}", writes))
    edges += [[src, "logits"] for src, w in writers if w & set(output_dims)]
    return edges


def circuit_forward(
    model: Any, tokens: Int[Tensor, "batch pos"], edges: list[list[str]]
) -> Float[Tensor, "batch pos d_vocab_out"]:
    """Logits of ``model`` when only ``edges`` carry signal (every other edge zero-ablated).

    Each receiver's input is the sum of the outputs of its senders in ``edges`` (an
    attention head's query, key and value inputs separately); a receiver with no
    sender gets zeros, as in ACDC's zero ablation. Only for models without LayerNorm.
    """
    assert model.cfg.normalization_type is None
    cache: dict[str, Tensor] = {"embed": model.embed(tokens) + model.pos_embed(tokens)}
    senders: dict[str, list[str]] = {}
    for src, dst in edges:
        senders.setdefault(dst, []).append(src)

    def inp(dst: str) -> Tensor:
        zero = torch.zeros_like(cache["embed"])
        return sum((cache[s] for s in senders.get(dst, [])), zero)

    for layer, block in enumerate(model.blocks):
        attn = block.attn
        for h in range(model.cfg.n_heads):
            name = f"L{layer}H{h}"
            q = inp(f"{name}.q") @ attn.W_Q[h] + attn.b_Q[h]
            k = inp(f"{name}.k") @ attn.W_K[h] + attn.b_K[h]
            v = inp(f"{name}.v") @ attn.W_V[h] + attn.b_V[h]
            pattern = torch.softmax(q @ k.transpose(-1, -2) / attn.attn_scale, dim=-1)
            cache[name] = pattern @ v @ attn.W_O[h] + attn.b_O / model.cfg.n_heads
        pre = inp(f"MLP{layer}") @ block.mlp.W_in + block.mlp.b_in
        cache[f"MLP{layer}"] = torch.relu(pre) @ block.mlp.W_out + block.mlp.b_out
    return inp("logits") @ model.unembed.W_U + model.unembed.b_U
