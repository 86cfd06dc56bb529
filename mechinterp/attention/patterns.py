"""Attention patterns of one prompt: interactive offline views and static heatmap grids.

:func:`attention_patterns` reads every layer's pattern ``A[layer, head, query, key]`` for a
prompt through the shared cache and returns an :class:`AttentionPatterns` result with three
circuitsvis views — all heads of a layer (:meth:`~AttentionPatterns.view_layer`), one head
(:meth:`~AttentionPatterns.view_head`), and the tokens coloured by the attention a chosen
query pays them (:meth:`~AttentionPatterns.view_query`) — each self-contained and offline
(see :mod:`mechinterp.attention.render`), plus a static layer × head grid
(:meth:`~AttentionPatterns.plot`) to save as PNG or SVG.

Example:
    >>> import mechinterp
    >>> from mechinterp.attention import attention_patterns
    >>> model = mechinterp.load("zoo:attn-only-2l")
    >>> pats = attention_patterns(model, "t1 t2 t3 t4 t1 t2 t3 t4")
    >>> pats.view_layer(1).save("layer1.html")  # doctest: +SKIP
    >>> pats.plot().savefig("grid.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jaxtyping import Float
from torch import Tensor

from mechinterp.attention.inputs import check_layers, read_patterns
from mechinterp.core.precision import runs_synced
from mechinterp.attention.figures import plot_pattern_grid
from mechinterp.attention.render import OfflineView, circuitsvis_html
from mechinterp.core.results import AbstractResult
from mechinterp.errors import EmptyInputError, MechinterpError
from mechinterp.viz import escape

__all__ = ["AttentionPatterns", "attention_patterns"]


@dataclass(frozen=True, eq=False)
class AttentionPatterns(AbstractResult):
    """The attention patterns of one prompt.

    Attributes:
        str_tokens: the prompt's string tokens (the labels of both axes).
        patterns: ``[layer, head_index, query_pos, key_pos]``; row ``q`` sums to 1.
        layers: the model layers the first axis holds.
        method: ``"patterns"``.
        parameters: how they were obtained.
        dtype: the dtype the model computed them in (``patterns`` itself is float32).
    """

    str_tokens: list[str]
    patterns: Float[Tensor, "layer head_index query_pos key_pos"]
    layers: list[int]
    method: str = "patterns"
    parameters: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"

    def _index(self, layer: int) -> int:
        if layer not in self.layers:
            raise MechinterpError(f"Layer {layer} is not in this result; it holds layers {self.layers}.")
        return self.layers.index(layer)

    def _head(self, head: int) -> int:
        n = self.patterns.shape[1]
        if not -n <= head < n:
            raise MechinterpError(f"Head {head} does not exist: this model has heads 0..{n - 1}.")
        return head % n

    def _query(self, query: int) -> int:
        n = len(self.str_tokens)
        if not -n <= query < n:
            raise MechinterpError(f"Query position {query} is outside the prompt's {n} tokens.")
        return query % n

    def head(self, layer: int, head: int) -> Float[Tensor, "query_pos key_pos"]:
        """The pattern of one head."""
        return self.patterns[self._index(layer), self._head(head)]

    # ------------------------------------------------------------------ views
    def _layer_component(self, layer: int) -> tuple[str, dict[str, Any]]:
        pattern = self.patterns[self._index(layer)]
        names = [f"L{layer}H{h}" for h in range(pattern.shape[0])]
        props = {"attention": pattern, "tokens": self.str_tokens, "attentionHeadNames": names, "maskUpperTri": True}
        return "AttentionHeads", props

    def view_layer(self, layer: int) -> OfflineView:
        """Interactive view of all heads of ``layer`` (circuitsvis ``attention_heads``), offline."""
        return OfflineView.from_components([self._layer_component(layer)], title=f"Attention, layer {layer}")

    def view_head(self, layer: int, head: int) -> OfflineView:
        """Interactive view of one head (circuitsvis ``attention_pattern``), offline."""
        props = {"attention": self.head(layer, head), "tokens": self.str_tokens, "showAxisLabels": True, "maskUpperTri": True}
        return OfflineView.from_components([("AttentionPattern", props)], title=f"Attention, L{layer}H{head}")

    def view_query(self, layer: int, head: int | None, query: int = -1) -> OfflineView:
        """The prompt's tokens coloured by the attention that token ``query`` pays them.

        Args:
            layer: the layer.
            head: the head, or ``None`` for the mean over the layer's heads.
            query: the query (destination) position; negative counts from the end.
        """
        q = self._query(query)
        pattern = self.patterns[self._index(layer)]
        row = (pattern.mean(0) if head is None else pattern[self._head(head)])[q]
        who = f"L{layer} mean of heads" if head is None else f"L{layer}H{self._head(head)}"
        props = {"tokens": self.str_tokens, "values": row, "minValue": 0.0, "maxValue": float(row.max())}
        return OfflineView.from_components(
            [("ColoredTokens", props)], title=f"Attention from token {q} ({self.str_tokens[q]!r}), {who}"
        )

    # ---------------------------------------------------------------- outputs
    def plot(self, ax: Any = None, layers: Sequence[int] | None = None, heads: Sequence[int] | None = None) -> Any:
        """A static layer × head grid of heatmaps with token labels (``ax`` is not used: it is a grid)."""
        layers = list(layers) if layers is not None else self.layers
        heads = [self._head(h) for h in heads] if heads is not None else list(range(self.patterns.shape[1]))
        data = self.patterns[[self._index(layer) for layer in layers]][:, heads]
        return plot_pattern_grid(data, self.str_tokens, layers, heads)

    def to_html(self) -> str:
        """Every layer's heads as interactive views, the circuitsvis bundle inlined once."""
        components = [self._layer_component(layer) for layer in self.layers]
        titles = [f"Layer {layer}" for layer in self.layers]
        head = f"<p class='muted'>Prompt: {escape(' '.join(self.str_tokens))}</p>"
        return head + circuitsvis_html(components, titles)


@runs_synced
def attention_patterns(
    model: Any,
    prompt: Any,
    *,
    layers: Sequence[int] | None = None,
) -> AttentionPatterns:
    """Read the attention patterns of one prompt (text or token ids) through the shared cache.

    Args:
        model: a ``HookedTransformer``.
        prompt: one text prompt, a 1-D tensor of token ids, or a one-element list.
        layers: layers to keep (default all).

    Returns:
        An :class:`AttentionPatterns` with views and plots.

    Raises:
        EmptyInputError: no prompt. MechinterpError: several prompts, or a bad layer.

    Example:
        >>> pats = attention_patterns(model, "t1 t2 t3 t1 t2 t3")  # doctest: +SKIP
        >>> pats.view_head(1, 2)  # renders in Jupyter, offline  # doctest: +SKIP
    """
    if isinstance(prompt, (list, tuple)):
        if not prompt:
            raise EmptyInputError("No prompt given: pass one text prompt.")
        if len(prompt) != 1:
            raise MechinterpError(
                f"attention_patterns views one prompt; got {len(prompt)}. Call it once per prompt "
                "(head_scores and attention_rollout take batches)."
            )
        prompt = prompt[0]
    if hasattr(prompt, "ndim") and prompt.ndim == 2 and prompt.shape[0] != 1:
        raise MechinterpError(f"attention_patterns views one prompt; got a batch of {prompt.shape[0]}.")
    batch = read_patterns(model, prompt, check_layers(model, layers), batch_size=1)
    n = int(batch.lengths[0])
    return AttentionPatterns(
        str_tokens=batch.str_tokens[0],
        patterns=batch.patterns[0, :, :, :n, :n].contiguous(),
        layers=batch.layers,
        parameters={"n_tokens": n},
        dtype=batch.dtype,
    )
