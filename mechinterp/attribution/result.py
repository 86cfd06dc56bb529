"""The result of every attribution method: :class:`TokenAttribution`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError
from mechinterp.viz import escape, figure_to_img_tag, heatmap, html_page, table_html, tokens_html

__all__ = ["TokenAttribution"]


@dataclass(frozen=True)
class TokenAttribution(AbstractResult):
    """Scores of input tokens (or token groups) for one or more targets.

    Attributes:
        tokens: the input token strings (or group labels when features were grouped).
        scores: ``[n_targets, n_tokens]``; row ``t`` explains target ``t``.
        targets: one label per row (``"logit(' Paris')"``, ``"3:' the'"`` for generation).
        method: the registered method name.
        options: the method's options as given (JSON-able).
        metadata: method outputs beyond the scores: ``convergence_delta`` (IG),
            ``target_values`` (F(x)), ``baseline_values`` (F(baseline)), ``r2`` (LIME),
            ``groups`` (positions per feature), ``n_forward`` and the like.

    Example:
        >>> res = attribute(model, "The capital of France is", " Paris", method="integrated_gradients")  # doctest: +SKIP
        >>> res.top_k(3)  # doctest: +SKIP
        [(4, ' France', 2.31), ...]
    """

    tokens: list[str]
    scores: Float[Tensor, "n_targets n_tokens"]
    targets: list[str]
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        scores = torch.as_tensor(self.scores, dtype=torch.float32)
        if scores.ndim == 1:
            scores = scores.unsqueeze(0)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "tokens", [str(t) for t in self.tokens])
        object.__setattr__(self, "targets", [str(t) for t in self.targets])
        if scores.shape != (len(self.targets), len(self.tokens)):
            raise MechinterpError(
                f"scores have shape {tuple(scores.shape)} but there are {len(self.targets)} targets and "
                f"{len(self.tokens)} tokens."
            )

    @property
    def n_targets(self) -> int:
        return len(self.targets)

    def _row(self, target: int | str) -> int:
        if isinstance(target, str):
            if target not in self.targets:
                raise MechinterpError(f"Unknown target {target!r}; this result has {self.targets}.")
            return self.targets.index(target)
        if not -self.n_targets <= target < self.n_targets:
            raise MechinterpError(f"Target index {target} out of range for {self.n_targets} target(s).")
        return target % self.n_targets

    def top_k(self, k: int = 5, target: int | str = 0, by: str = "value") -> list[tuple[int, str, float]]:
        """The ``k`` highest-ranked tokens as ``(position, token, score)``.

        Args:
            k: how many.
            target: which target row (index or label).
            by: ``"value"`` (most positive first) or ``"abs"`` (largest magnitude first).
        """
        if by not in ("value", "abs"):
            raise MechinterpError(f"by must be 'value' or 'abs', got {by!r}.")
        row = self.scores[self._row(target)]
        order = torch.argsort(row.abs() if by == "abs" else row, descending=True, stable=True)[:k]
        return [(int(i), self.tokens[int(i)], float(row[i])) for i in order]

    def to_dataframe(self) -> Any:
        """A long table: one row per (target, token) with position, token, score and rank."""
        import pandas as pd

        rows = []
        for t, label in enumerate(self.targets):
            ranks = torch.argsort(torch.argsort(self.scores[t], descending=True, stable=True))
            for i, tok in enumerate(self.tokens):
                rows.append({"target": label, "position": i, "token": tok, "score": float(self.scores[t, i]),
                             "rank": int(ranks[i]) + 1, "method": self.method})
        return pd.DataFrame(rows)

    def plot(self, ax: Any = None, target: int | str | None = None) -> Any:
        """A bar chart for one target, a heatmap (targets × tokens) for several."""
        labels = [f"{i}:{t}" for i, t in enumerate(self.tokens)]
        if self.n_targets > 1 and target is None:
            return heatmap(self.scores, row_labels=self.targets, col_labels=labels, ax=ax,
                           title=f"{self.method}", xlabel="input token", ylabel="target", cbar_label="attribution")
        from mechinterp.viz import pyplot

        plt = pyplot()
        row = self.scores[self._row(target or 0)].numpy()
        if ax is None:
            fig, ax = plt.subplots(figsize=(min(14, 1.5 + 0.45 * len(labels)), 3))
        else:
            fig = ax.figure
        ax.bar(range(len(row)), row, color=["#dc322f" if v >= 0 else "#268bd2" for v in row])
        from mechinterp.viz.figures import thinned_ticks

        width = fig.get_size_inches()[0]
        ticks = thinned_ticks(len(labels), most=max(8, int((width - 1.5) / 0.14)))  # 8-point labels need ~0.14 in each
        ax.set_xticks(ticks, labels=[labels[i] for i in ticks], rotation=90, fontsize=8)
        ax.set_xlabel("input token" + ("" if len(ticks) == len(labels) else f" (one in {ticks[1] - ticks[0]} labelled)"))
        ax.set_ylabel("attribution")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_title(f"{self.method}: {self.targets[self._row(target or 0)]}")
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        """Tokens coloured by score, one line per target, then the metadata (offline)."""
        lines = "".join(tokens_html(self.tokens, self.scores[t].tolist(), title=self.targets[t]) for t in range(self.n_targets))
        meta_rows = [{"key": k, "value": _short(v)} for k, v in self.metadata.items()]
        opts = escape(", ".join(f"{k}={_short(v)}" for k, v in self.options.items()))
        return f"<section><h3>{escape(self.method)}</h3><p class='muted'>{opts}</p>{lines}{table_html(meta_rows)}</section>"

    def to_page(self, title: str | None = None, figure: bool = True) -> str:
        """A complete offline HTML page: the coloured tokens and (optionally) the plot."""
        body = self.to_html()
        if figure:
            body += figure_to_img_tag(self.plot())
        return html_page(title or f"attribution: {self.method}", body)


def _short(value: Any) -> str:
    if isinstance(value, Tensor):
        value = value.tolist()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and value and isinstance(value[0], float):
        return "[" + ", ".join(f"{v:.4g}" for v in value[:8]) + (", …]" if len(value) > 8 else "]")
    text = str(value)
    return text if len(text) < 120 else text[:117] + "..."
