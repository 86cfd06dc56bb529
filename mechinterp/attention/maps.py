"""The result of rollout, flow and gradient-weighted rollout: a token × token map per prompt.

:class:`AttentionMap` holds, for each prompt, the ``[query_pos, key_pos]`` matrix the method
computed and the per-input-token vector read from it at a chosen query (by default each
prompt's last token) — the vector to compare with the attribution methods, which score each
input token for one output position.

Example:
    >>> result = attention_rollout(model, ["t1 t2 t3 t1 t2"])  # doctest: +SKIP
    >>> result.scores(0)  # one score per input token  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.attention.sinks import sink_note
from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError
from mechinterp.viz import escape, figure_to_img_tag, pyplot, tokens_html

__all__ = ["AttentionMap"]

_TITLES = {
    "rollout": "Attention rollout",
    "flow": "Attention flow",
    "gradient_rollout": "Gradient-weighted attention rollout",
}


@dataclass(frozen=True, eq=False)
class AttentionMap(AbstractResult):
    """A token-to-token map per prompt and the per-input-token vector at one query.

    Attributes:
        method: ``"rollout"``, ``"flow"`` or ``"gradient_rollout"``.
        str_tokens: each prompt's string tokens (padding excluded).
        matrix: ``[batch, query_pos, key_pos]``, right-padded with zeros (identity rows
            at padding for rollout).
        token_scores: ``[batch, key_pos]``: row ``query_positions[b]`` of the matrix (see
            the method for what exactly), zero at padding.
        query_positions: ``[batch]``: the query each prompt's vector was read at.
        lengths: ``[batch]``: real tokens per prompt.
        parameters: the method's settings (head fusion, layers, target, ...).
        sink_positions: the positions excluded as attention sinks (``[]``: none; see
            :mod:`mechinterp.attention.sinks`).
        sink_mode: how they were excluded (``"self"``, ``"renormalise"``, ``"drop"`` for
            gradient rollout), ``None`` when none were.
        sink_share: ``[batch]``: the share of each prompt's ``token_scores`` that the sink
            positions (position 0 when none were excluded) hold *without* the exclusion —
            1.0 means the plain map only sees the sink. ``None`` where it was not computed
            (flow with a sink: it would need a second set of max-flows).
        dtype: the dtype the model computed the patterns in; the map itself is float32.
    """

    method: str
    str_tokens: list[list[str]]
    matrix: Float[Tensor, "batch query_pos key_pos"]
    token_scores: Float[Tensor, "batch key_pos"]
    query_positions: Int[Tensor, " batch"]
    lengths: Int[Tensor, " batch"]
    parameters: dict[str, Any] = field(default_factory=dict)
    sink_positions: list[int] = field(default_factory=list)
    sink_mode: str | None = None
    sink_share: Float[Tensor, " batch"] | None = None
    dtype: str = "float32"

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def _check(self, prompt: int) -> int:
        if not -len(self) <= prompt < len(self):
            raise MechinterpError(f"Prompt {prompt} is not in this result, which has {len(self)} prompt(s).")
        return prompt % len(self)

    def scores(self, prompt: int = 0) -> Float[Tensor, " pos"]:
        """The per-input-token vector of one prompt, padding removed."""
        i = self._check(prompt)
        return self.token_scores[i, : int(self.lengths[i])]

    def map(self, prompt: int = 0) -> Float[Tensor, "pos pos"]:
        """The matrix of one prompt, padding removed."""
        i = self._check(prompt)
        n = int(self.lengths[i])
        return self.matrix[i, :n, :n]

    def sink_note(self, prompt: int = 0) -> str:
        """One sentence on the sink for one prompt: what was excluded, or a hint to exclude it."""
        i = self._check(prompt)
        share = None if self.sink_share is None else float(self.sink_share[i])
        return sink_note(self.sink_positions, self.sink_mode, share, what=f"{self.method} scores")

    def to_dataframe(self) -> Any:
        """Long format: one row per (prompt, position) with the token and its score."""
        import pandas as pd

        rows = [
            {"prompt": i, "position": p, "token": tok, "score": float(self.token_scores[i, p]), "method": self.method}
            for i, toks in enumerate(self.str_tokens)
            for p, tok in enumerate(toks)
        ]
        return pd.DataFrame(rows)

    def plot(self, ax: Any = None, prompt: int = 0) -> Any:
        """Heatmap of one prompt's matrix with token labels; the query row is outlined."""
        plt = pyplot()
        i = self._check(prompt)
        data = self.map(i).detach().cpu().float().numpy()
        toks = self.str_tokens[i]
        if ax is None:
            side = min(12.0, max(3.5, 0.32 * len(toks) + 1.8))
            fig, ax = plt.subplots(figsize=(side + 1.0, side))
        else:
            fig = ax.figure
        image = ax.imshow(data, cmap="Blues", vmin=0.0, aspect="equal")
        if len(toks) <= 48:
            ax.set_xticks(range(len(toks)), labels=toks, fontsize=7, rotation=90)
            ax.set_yticks(range(len(toks)), labels=toks, fontsize=7)
        q = int(self.query_positions[i])
        ax.add_patch(plt.Rectangle((-0.5, q - 0.5), len(toks), 1, fill=False, edgecolor="crimson", linewidth=1.2))
        ax.set_xlabel("input (key) token")
        ax.set_ylabel("output (query) token")
        title = _TITLES.get(self.method, self.method)
        if self.sink_positions:
            title += f"\nsink {self.sink_positions} excluded ({self.sink_mode})"
        elif self.sink_share is not None and float(self.sink_share[i]) >= 0.5:
            title += f"\nposition 0 holds {float(self.sink_share[i]):.0%}: a sink? (sink='first')"
        ax.set_title(title, fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="relevance (outlined row: the query)")
        return fig

    def to_html(self) -> str:
        """Heatmap of the first prompt and, per prompt, tokens coloured by the token scores."""
        params = ", ".join(f"{k}={v}" for k, v in self.parameters.items())
        parts = [f"<h3>{escape(_TITLES.get(self.method, self.method))}</h3><p class='muted'>{escape(params)}</p>"]
        note = self.sink_note(0)
        if note:
            parts.append(f"<p class='note'>{escape(note)}</p>")
        parts.append(figure_to_img_tag(self.plot(prompt=0)))
        for i, toks in enumerate(self.str_tokens[:20]):
            q = int(self.query_positions[i])
            title = f"prompt {i}: scores for the output at token {q} ({toks[q]!r})"
            parts.append(tokens_html(toks, self.scores(i).tolist(), title=title))
        if len(self) > 20:
            parts.append(f"<p class='muted'>({len(self) - 20} more prompts not shown)</p>")
        return "<section>" + "".join(parts) + "</section>"
