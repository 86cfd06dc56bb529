"""Side-by-side views of several methods' attributions of the same prompt and target."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mechinterp.attribution.grouping import normalise_scores
from mechinterp.attribution.result import TokenAttribution
from mechinterp.errors import EmptyInputError, ShapeMismatchError
from mechinterp.viz import escape, heatmap, tokens_html

__all__ = ["comparison_matrix", "plot_comparison", "comparison_html"]


def comparison_matrix(results: Sequence[TokenAttribution], target: int = 0, normalise: str = "max") -> torch.Tensor:
    """``[n_methods, n_tokens]``: each method's row for ``target``, normalised (``"max"``: max |s| = 1)."""
    results = list(results)
    if not results:
        raise EmptyInputError("Pass at least one result to compare.")
    for r in results[1:]:
        if r.tokens != results[0].tokens:
            raise ShapeMismatchError(f"{r.method} is over different tokens than {results[0].method}; compare results of one prompt.")
    return torch.stack([normalise_scores(r.scores[target : target + 1], normalise)[0] for r in results])


def plot_comparison(results: Sequence[TokenAttribution], target: int = 0, ax: Any = None) -> Any:
    """A heatmap with one row per method (normalised scores) over the prompt's tokens."""
    matrix = comparison_matrix(results, target)
    tokens = [f"{i}:{t}" for i, t in enumerate(results[0].tokens)]
    return heatmap(matrix, row_labels=[r.method for r in results], col_labels=tokens, ax=ax,
                   title=f"methods compared: {results[0].targets[target]}", xlabel="input token",
                   cbar_label="normalised attribution")


def comparison_html(results: Sequence[TokenAttribution], target: int = 0) -> str:
    """One line of coloured tokens per method (normalised scores), offline HTML."""
    matrix = comparison_matrix(results, target)
    rows = "".join(tokens_html(results[0].tokens, matrix[i].tolist(), title=r.method) for i, r in enumerate(results))
    return f"<section><h3>{escape(results[0].targets[target])}</h3>{rows}</section>"
