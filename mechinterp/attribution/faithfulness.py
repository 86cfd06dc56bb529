"""Faithfulness of an attribution: deletion/insertion curves and ERASER's AOPC scores.

Features are ordered by score, highest first. With ``F(S)`` the target when only the
features in ``S`` keep their tokens (the others get the replacement token):

* deletion curve: ``F`` after removing the top ``k`` features, ``k = 0..n``; a faithful
  attribution makes it drop fast (low area under the normalised curve);
* insertion curve: ``F`` with only the top ``k`` features present; it should rise fast
  (high area);
* comprehensiveness (DeYoung et al., 2020; AOPC over bins ``q``):
  ``mean_q [F(x) - F(x without the top q%)]`` — higher is better;
* sufficiency: ``mean_q [F(x) - F(only the top q%)]`` — lower is better.

Curves are normalised as ``(F - F(∅)) / (F(x) - F(∅))`` before the area is taken (the
trapezoid rule over the removed/inserted fraction in [0, 1]).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from mechinterp.core.validation import check_count
from mechinterp.core.precision import runs_synced
from mechinterp.attribution.base import prepare_prompt
from mechinterp.attribution.forward import MaskedScorer, special_token_id
from mechinterp.attribution.result import TokenAttribution
from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError
from mechinterp.viz import escape, figure_to_img_tag, table_html

__all__ = ["Faithfulness", "faithfulness", "faithfulness_from_value_fn", "AOPC_BINS"]

AOPC_BINS = (0.01, 0.05, 0.1, 0.2, 0.5)


@dataclass(frozen=True)
class Faithfulness(AbstractResult):
    """Deletion/insertion curves, their areas, comprehensiveness and sufficiency.

    Attributes:
        method: the attribution method evaluated.
        fractions: ``[n + 1]`` fraction of features removed (deletion) / inserted (insertion).
        deletion / insertion: raw target values along the curves.
        deletion_auc / insertion_auc: area under the normalised curves.
        comprehensiveness / sufficiency: AOPC over ``bins``.
        order: feature indices, highest score first.
    """

    method: str
    fractions: list[float]
    deletion: list[float]
    insertion: list[float]
    deletion_auc: float
    insertion_auc: float
    comprehensiveness: float
    sufficiency: float
    order: list[int]
    bins: list[float] = field(default_factory=lambda: list(AOPC_BINS))
    replacement: str = "pad"

    def to_dataframe(self) -> Any:
        import pandas as pd

        return pd.DataFrame({"fraction": self.fractions, "deletion": self.deletion, "insertion": self.insertion})

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, "deletion_auc": self.deletion_auc, "insertion_auc": self.insertion_auc,
                "comprehensiveness": self.comprehensiveness, "sufficiency": self.sufficiency}

    def plot(self, ax: Any = None) -> Any:
        from mechinterp.viz import pyplot

        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(4.5, 3))
        else:
            fig = ax.figure
        ax.plot(self.fractions, self.deletion, marker="o", label=f"deletion (AUC {self.deletion_auc:.2f})")
        ax.plot(self.fractions, self.insertion, marker="s", label=f"insertion (AUC {self.insertion_auc:.2f})")
        ax.set_xlabel("fraction of features removed / inserted")
        ax.set_ylabel("target")
        ax.set_title(f"faithfulness: {self.method}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        return f"<section><h3>faithfulness: {escape(self.method)}</h3>{table_html([self.summary()])}{figure_to_img_tag(self.plot())}</section>"


def _area(values: Tensor, full: float, empty: float) -> float:
    gap = full - empty
    norm = (values - empty) / (gap if abs(gap) > 1e-12 else 1.0)
    x = torch.linspace(0, 1, len(values), dtype=torch.float64)
    return float(torch.trapezoid(norm, x))


def faithfulness_from_value_fn(value_fn: Callable[[Bool[Tensor, "m n"]], Float[Tensor, "m n_targets"]],
                               scores: Float[Tensor, " n"], method: str = "", bins: Sequence[float] = AOPC_BINS,
                               target_index: int = 0, replacement: str = "") -> Faithfulness:
    """Faithfulness metrics for feature ``scores`` under a value function ``masks -> values``."""
    scores = torch.as_tensor(scores, dtype=torch.float64).flatten()
    n = len(scores)
    if n == 0:
        raise MechinterpError("There are no features to evaluate.")
    order = torch.argsort(scores, descending=True, stable=True)
    deletion = torch.ones(n + 1, n, dtype=torch.bool)
    insertion = torch.zeros(n + 1, n, dtype=torch.bool)
    for k in range(1, n + 1):
        deletion[k, order[:k]] = False
        insertion[k, order[:k]] = True
    ks = sorted({max(1, min(n, math.ceil(q * n))) for q in bins})
    values = torch.as_tensor(value_fn(torch.cat([deletion, insertion])), dtype=torch.float64)[:, target_index]
    dele, ins = values[: n + 1], values[n + 1 :]
    full, empty = float(dele[0]), float(ins[0])
    comp = float(torch.stack([full - dele[k] for k in ks]).mean())
    suff = float(torch.stack([full - ins[k] for k in ks]).mean())
    return Faithfulness(method, torch.linspace(0, 1, n + 1).tolist(), dele.tolist(), ins.tolist(),
                        _area(dele, full, empty), _area(ins, full, empty), comp, suff, order.tolist(),
                        list(bins), str(replacement))


@runs_synced
def faithfulness(model: Any, prompt: str | Tensor, target: Any, result: TokenAttribution, replacement: str | int = "pad",
                 target_index: int = 0, bins: Sequence[float] = AOPC_BINS, batch_size: int = 64) -> Faithfulness:
    """Deletion/insertion curves and AOPC scores of ``result`` on ``model``.

    Token-level results are evaluated over their non-BOS tokens; grouped results (words,
    spans) over their groups (``result.metadata["groups"]``).

    Example:
        >>> res = attribute(model, prompt, " Paris", method="ig")  # doctest: +SKIP
        >>> faithfulness(model, prompt, " Paris", res).deletion_auc  # doctest: +SKIP
    """
    check_count(batch_size, "batch_size")
    prep = prepare_prompt(model, prompt, target)
    if len(result.tokens) == prep.n_prompt and result.tokens == prep.token_strs:
        start = 1 if prep.has_bos else 0
        groups = [[i] for i in range(start, prep.n_prompt)]
        scores = result.scores[target_index, start:]
    elif "groups" in result.metadata and len(result.metadata["groups"]) == len(result.tokens):
        groups = [list(map(int, g)) for g in result.metadata["groups"]]
        scores = result.scores[target_index]
    else:
        raise MechinterpError("The result does not match this prompt's tokens (and carries no feature groups): "
                              "pass the prompt the result was computed on.")
    scorer = MaskedScorer(model, prep.target, groups, special_token_id(model, replacement), batch_size)
    return faithfulness_from_value_fn(scorer, scores, result.method, bins, target_index, str(replacement))
