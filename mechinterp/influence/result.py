"""The result of a training-data attribution: scores of every training sequence per query."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError
from mechinterp.viz import escape, figure_to_img_tag, html_page, tokens_html

__all__ = ["InfluenceResult"]


@dataclass(frozen=True)
class InfluenceResult(AbstractResult):
    """How much each training sequence helps (``> 0``) or hurts (``< 0``) each query.

    A score is the first-order change of the query's measurement ``m`` (the target's
    log-probability, a logit difference or a metric) when the training sequence is
    up-weighted: ``-∇m · H⁻¹ ∇L_train`` (influence functions; ``H`` = EK-FAC, or the
    identity for ``"dot"``), its cosine version, or TracIn's ``-Σ_c lr_c ∇m_c · ∇L_c``.

    Attributes:
        method: ``"ekfac"``, ``"kfac"``, ``"dot"``, ``"cosine"`` or ``"tracin"``.
        queries: one label per query.
        scores: ``[n_queries, n_train]``.
        helpful: per query, the ``top_k`` highest-scoring sequences, each a dict with
            ``index``, ``score``, ``tokens`` (strings) and ``token_scores`` (the
            influence of each token's own next-token loss, placed on the predicted token;
            they sum to the score up to projection error; the first token has none: 0).
        harmful: the same for the ``top_k`` lowest scores.
        meta: settings (projection dimension, damping, parameters, checkpoints).
    """

    method: str
    queries: list[str]
    scores: Float[Tensor, "query n_train"]
    helpful: list[list[dict[str, Any]]]
    harmful: list[list[dict[str, Any]]]
    meta: dict[str, Any] = field(default_factory=dict)

    def ranks(self, query: int = 0) -> Tensor:
        """``[n_train]``: rank of every training sequence for ``query`` (0 = most helpful)."""
        self._check_query(query)
        order = self.scores[query].argsort(descending=True)
        ranks = torch.empty_like(order)
        ranks[order] = torch.arange(len(order))
        return ranks

    def top(self, query: int = 0, k: int = 10, harmful: bool = False) -> list[int]:
        """Indices of the ``k`` most helpful (or harmful) training sequences for ``query``."""
        self._check_query(query)
        return self.scores[query].argsort(descending=not harmful)[:k].tolist()

    def _check_query(self, query: int) -> None:
        if not 0 <= query < len(self.queries):
            raise MechinterpError(f"query={query} is out of range: this result has {len(self.queries)} queries.")

    def plot(self, ax: Any = None, query: int = 0) -> Any:
        """Bars of the top helpful and harmful scores of ``query``."""
        from mechinterp.viz import pyplot

        self._check_query(query)
        plt = pyplot()
        rows, seen = [], set()
        for r in self.helpful[query] + self.harmful[query][::-1]:  # with top_k >= the training set both lists hold every example
            if r["index"] not in seen:
                seen.add(r["index"])
                rows.append(r)
        if ax is None:
            fig, ax = plt.subplots(figsize=(7, 0.3 * max(4, len(rows)) + 1))
        else:
            fig = ax.figure
        labels = [f"#{r['index']} " + " ".join(r["tokens"])[:40] for r in rows]
        values = [r["score"] for r in rows]
        ax.barh(range(len(rows)), values, color=["#dc322f" if v >= 0 else "#268bd2" for v in values])
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel(f"influence ({self.method})")
        ax.set_title(self.queries[query][:80], fontsize=9)
        return fig

    def to_html(self) -> str:
        parts = [f"<h2>Training-data influence ({escape(self.method)})</h2>"]
        for q, label in enumerate(self.queries):
            parts.append(f"<section><h3>{escape(label)}</h3>")
            for title, rows in (("most helpful", self.helpful[q]), ("most harmful", self.harmful[q])):
                parts.append(f"<div class='muted'>{title}</div>")
                for r in rows:
                    parts.append(tokens_html(r["tokens"], r["token_scores"], title=f"#{r['index']}  score {r['score']:.4g}"))
            parts.append(figure_to_img_tag(self.plot(query=q)))
            parts.append("</section>")
        return html_page("influence", "".join(parts))
