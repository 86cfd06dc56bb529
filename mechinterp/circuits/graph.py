"""The computational graph of a transformer as senders, receivers and a mask of real edges.

A *sender* writes to the residual stream: the input embeddings (``"embed"``: token plus
position embedding), every attention head (``"L{l}H{h}"``) and every MLP (``"MLP{l}"``).
A *receiver* reads from it: every head's query, key and value input (``"L{l}H{h}.q"``,
``.k``, ``.v``), every MLP (``"MLP{l}"``) and the unembedding (``"logits"``). An *edge*
``s -> r`` exists when ``s`` writes before ``r`` reads (an MLP reads the heads of its own
layer, unless the model runs attention and MLP in parallel). Names match the zoo's
``circuit.json`` files.

**Grouped-query attention (GQA).** Models whose heads share key/value projections
(``cfg.n_key_value_heads < cfg.n_heads``: Llama 3, Qwen 2, Mistral, SmolLM2, Gemma) need no
flag: the graph keeps one ``.k`` and one ``.v`` receiver *per query head*, and the patching
engine ungroups the keys/values internally for the duration of each call (it sets
``cfg.ungroup_grouped_query_attention = True`` next to the split q/k/v inputs and restores
it afterwards, also on error). In that mode TransformerLens computes a key and a value per
query head from the repeated weights (``hook_k_input`` / ``hook_k`` are
``[batch pos head_index ...]`` instead of ``[batch pos kv_head_index ...]``), which is the
same function of the input, so unpatched runs are the model itself. An edge ``s -> L{l}H{h}.k``
then patches the key *that head h reads*; the other heads of its group keep theirs. Patching
the edge into every head of one group (:meth:`Graph.kv_heads`) is patching the group's
shared key input in the grouped model (tested against TransformerLens hooks). Why not one
receiver per key/value group: node views, circuit files and drawings stay per head (a group
input is not a node of its own), and per-head scores can always be summed over a group,
while group scores cannot be split back. The cost is computing keys/values for every query
head instead of every group (on SmolLM2, 9 instead of 3 per layer: a few percent of a forward).

Edge scores are dense ``[n_senders, n_receivers]`` matrices; :attr:`Graph.real` says which
entries are edges (as in EAP-IG and auto-circuit). The graph itself is immutable: a circuit
is a graph plus scores and a boolean edge set (:class:`mechinterp.circuits.Circuit`).

Example:
    >>> import mechinterp
    >>> from mechinterp.circuits import Graph
    >>> g = Graph.from_model(mechinterp.load("zoo:tracr-frac-prevs"))
    >>> g.senders[:3], g.receivers[-1], int(g.real.sum())
    (['embed', 'L0H0', 'MLP0'], 'logits', 23)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor

from mechinterp.errors import MechinterpError

__all__ = ["Graph", "grouped_kv_heads"]

QKV = ("q", "k", "v")


@dataclass(frozen=True, eq=False)
class Graph:
    """Senders, receivers and the real-edge mask of a model's residual-stream graph.

    Attributes:
        n_layers / n_heads: the model's shape.
        has_mlp: whether the blocks have MLPs (``attn_only`` models have none).
        parallel: attention and MLP read the same residual (GPT-J style).
        senders: node names in the order they write (embed, then per layer heads, MLP).
        receivers: input names in the order they read (per layer q/k/v of each head, MLP; logits).
        real: ``[n_senders, n_receivers]`` True where the edge exists.
        n_key_value_heads: key/value heads per layer (``None``: one per head; fewer: GQA,
            see the module docstring).
    """

    n_layers: int
    n_heads: int
    has_mlp: bool
    parallel: bool = False
    senders: list[str] = field(default_factory=list)
    receivers: list[str] = field(default_factory=list)
    real: Bool[Tensor, "n_senders n_receivers"] = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.bool))
    n_key_value_heads: int | None = None

    @classmethod
    def from_model(cls, model: Any) -> Graph:
        """The graph of a TransformerLens ``HookedTransformer`` (GQA models included, no flag needed)."""
        cfg = model.cfg
        return cls.build(cfg.n_layers, cfg.n_heads, has_mlp=not cfg.attn_only, parallel=bool(cfg.parallel_attn_mlp),
                         n_key_value_heads=grouped_kv_heads(cfg))

    @classmethod
    def build(
        cls, n_layers: int, n_heads: int, has_mlp: bool = True, parallel: bool = False, n_key_value_heads: int | None = None,
    ) -> Graph:
        """The graph of a model with this shape (see :meth:`from_model`).

        Raises:
            MechinterpError: ``n_key_value_heads`` that does not divide ``n_heads``.
        """
        if n_key_value_heads is not None and (n_key_value_heads < 1 or n_heads % n_key_value_heads):
            raise MechinterpError(
                f"n_key_value_heads must divide n_heads ({n_heads}); got {n_key_value_heads}."
            )
        if n_key_value_heads == n_heads:
            n_key_value_heads = None
        senders, order_s = ["embed"], [0.0]
        receivers, order_r = [], []
        for layer in range(n_layers):
            for h in range(n_heads):
                senders.append(f"L{layer}H{h}")
                order_s.append(layer + 0.25)
                for part in QKV:
                    receivers.append(f"L{layer}H{h}.{part}")
                    order_r.append(layer + 0.1)
            if has_mlp:
                senders.append(f"MLP{layer}")
                order_s.append(layer + 0.75)
                receivers.append(f"MLP{layer}")
                order_r.append(layer + (0.1 if parallel else 0.5))
        receivers.append("logits")
        order_r.append(n_layers + 1.0)
        real = torch.tensor(order_s)[:, None] < torch.tensor(order_r)[None, :]
        return cls(n_layers, n_heads, has_mlp, parallel, senders, receivers, real, n_key_value_heads)

    # ----- views -------------------------------------------------------------------------
    @property
    def n_senders(self) -> int:
        return len(self.senders)

    @property
    def n_receivers(self) -> int:
        return len(self.receivers)

    @property
    def n_edges(self) -> int:
        return int(self.real.sum())

    @property
    def nodes(self) -> list[str]:
        """Node-level view: senders plus ``"logits"`` (q/k/v inputs merge into their head)."""
        return [*self.senders, "logits"]

    @property
    def grouped(self) -> bool:
        """Whether heads share key/value inputs (GQA) in the model this graph describes."""
        return self.n_key_value_heads is not None

    def kv_heads(self, head: int) -> list[int]:
        """The query heads that share ``head``'s key/value projections (itself alone without GQA).

        TransformerLens repeats key/value head ``g`` for query heads ``g * r .. g * r + r - 1``
        (``r = n_heads / n_key_value_heads``, ``torch.repeat_interleave``).

        Example:
            >>> Graph.build(1, 4, n_key_value_heads=2).kv_heads(3)
            [2, 3]
        """
        if not 0 <= head < self.n_heads:
            raise MechinterpError(f"head must be in [0, {self.n_heads}); got {head}.")
        if self.n_key_value_heads is None:
            return [head]
        r = self.n_heads // self.n_key_value_heads
        return list(range(head // r * r, head // r * r + r))

    def sender_index(self, name: str) -> int:
        """Index of a sender name; raises a MechinterpError listing valid names."""
        try:
            return self.senders.index(name)
        except ValueError:
            raise MechinterpError(f"Unknown sender {name!r}; senders are {self.senders}.") from None

    def receiver_index(self, name: str) -> int:
        """Index of a receiver name (``"L1H0.q"``, ``"MLP0"``, ``"logits"``)."""
        try:
            return self.receivers.index(name)
        except ValueError:
            raise MechinterpError(
                f"Unknown receiver {name!r}; receivers are head inputs 'L{{l}}H{{h}}.q/.k/.v', 'MLP{{l}}' and 'logits' "
                f"(this model: {self.receivers[:4]} ... {self.receivers[-2:]})."
            ) from None

    def receiver_node(self, receiver: str) -> str:
        """The node a receiver belongs to (``"L1H0.q" -> "L1H0"``)."""
        return receiver.split(".")[0]

    def edge_mask(self, edges: Any) -> Bool[Tensor, "n_senders n_receivers"]:
        """A boolean matrix with True at the given ``(sender, receiver)`` pairs.

        A receiver named as a whole head (``"L1H0"``) stands for its q, k and v inputs.

        Raises:
            MechinterpError: unknown names, or a pair that is not an edge of this graph.
        """
        mask = torch.zeros_like(self.real)
        for pair in edges:
            if len(pair) != 2:
                raise MechinterpError(f"Edges are (sender, receiver) pairs; got {pair!r}.")
            s, r = pair
            i = self.sender_index(s)
            targets = [f"{r}.{p}" for p in QKV] if r in self.senders and r.startswith("L") else [r]
            for t in targets:
                j = self.receiver_index(t)
                if not self.real[i, j]:
                    raise MechinterpError(f"{s} -> {t} is not an edge: {s} does not write before {t} reads.")
                mask[i, j] = True
        return mask

    def node_matrix(self, edge_values: Tensor) -> Tensor:
        """Sum edge values ``[..., n_senders, n_receivers]`` into node pairs ``[..., n_senders, n_nodes]``.

        q/k/v receivers of a head merge into that head's column; columns follow :attr:`nodes`.
        """
        index = torch.tensor([self.nodes.index(self.receiver_node(r)) for r in self.receivers])
        out = edge_values.new_zeros(*edge_values.shape[:-1], len(self.nodes))
        return out.index_add_(-1, index.to(edge_values.device), edge_values)

    # ----- structure used by the patching engine --------------------------------------------
    def layer_senders(self, layer: int) -> tuple[slice, int | None]:
        """(slice of this layer's head senders, index of its MLP sender or None)."""
        per = self.n_heads + (1 if self.has_mlp else 0)
        start = 1 + layer * per
        return slice(start, start + self.n_heads), (start + self.n_heads if self.has_mlp else None)

    def layer_receivers(self, layer: int) -> tuple[slice, int | None]:
        """(slice of this layer's q/k/v receivers in head-major order, index of its MLP receiver or None)."""
        per = 3 * self.n_heads + (1 if self.has_mlp else 0)
        start = layer * per
        return slice(start, start + 3 * self.n_heads), (start + 3 * self.n_heads if self.has_mlp else None)

    def to_dict(self) -> dict[str, Any]:
        return {"n_layers": self.n_layers, "n_heads": self.n_heads, "has_mlp": self.has_mlp, "parallel": self.parallel,
                "n_key_value_heads": self.n_key_value_heads}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Graph:
        return cls.build(data["n_layers"], data["n_heads"], data["has_mlp"], data.get("parallel", False),
                         data.get("n_key_value_heads"))


def grouped_kv_heads(cfg: Any) -> int | None:
    """``cfg.n_key_value_heads`` when the model shares keys/values between heads (GQA), else ``None``."""
    kv = getattr(cfg, "n_key_value_heads", None)
    return kv if kv is not None and kv != cfg.n_heads else None
