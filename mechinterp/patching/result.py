"""The result of a patching sweep: a labelled tensor with its baselines, plots and tables."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.results import AbstractResult
from mechinterp.viz import escape, figure_to_img_tag, heatmap, table_html

__all__ = ["PatchResult"]

_POS_AXES = ("pos", "dest_pos")


@dataclass(frozen=True, eq=False)
class PatchResult(AbstractResult):
    """Patching effects over a grid (layer x position x head, ...).

    Attributes:
        values: the effects, normalised when :attr:`normalised` (0 = the base run, 1 = the
            run the patches come from: for denoising 0 = corrupted, 1 = clean; for noising
            0 = clean, 1 = corrupted); else equal to :attr:`raw`.
        raw: the mean metric over prompts of each patched run.
        dims: the axis names, e.g. ``("layer", "pos")``.
        labels: the label of each index along each axis (``"L0"``, ``"3:John"``, ``"H2"``).
        site: what was patched (``"resid_pre"``, ``"z"``, ``"path:...->..."``, ...).
        method: ``"activation"``, ``"path"``, ``"causal_trace"``, ``"attribution"``,
            ``"attribution_ig"`` or ``"naive"``.
        direction: ``"denoising"`` or ``"noising"`` (``"ablation"`` for ablations).
        ablation: ``None``, ``"zero"``, ``"mean"`` or ``"resample"``.
        metric: the metric's name.
        normalised: whether :attr:`values` is normalised.
        base_value: the mean metric of the unpatched base run.
        target_value: the mean metric of the run patched from (``None`` if none).
        tokens: the string tokens of prompt 0.
    """

    values: Float[Tensor, "..."]
    raw: Float[Tensor, "..."]
    dims: tuple[str, ...]
    labels: dict[str, list[str]]
    site: str
    method: str = "activation"
    direction: str = "denoising"
    ablation: str | None = None
    metric: str = ""
    normalised: bool = True
    base_value: float = 0.0
    target_value: float | None = None
    tokens: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(self.dims))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def to_matrix(self) -> tuple[Tensor, list[str], list[str]]:
        """The values as a 2-D matrix with row and column labels (for heatmaps).

        Two axes: rows are the first, columns the second. More: columns are the position
        axis (else the last) and rows every combination of the others.
        """
        values = self.values.float()
        if values.ndim == 0:
            return values.reshape(1, 1), [self.site], [""]
        if values.ndim == 1:
            return values[None], [self.site], self.labels[self.dims[0]]
        if values.ndim == 2:
            return values, self.labels[self.dims[0]], self.labels[self.dims[1]]
        col = next((i for i, d in enumerate(self.dims) if d in _POS_AXES), values.ndim - 1)
        rows_dims = [i for i in range(values.ndim) if i != col]
        matrix = values.permute(*rows_dims, col).reshape(-1, values.shape[col])
        row_labels = ["".join(parts) for parts in itertools.product(*[self.labels[self.dims[i]] for i in rows_dims])]
        return matrix, row_labels, self.labels[self.dims[col]]

    def top(self, k: int = 10) -> list[tuple[dict[str, str], float]]:
        """The ``k`` entries of largest absolute value, as (labels per axis, value)."""
        flat = self.values.flatten().float()
        order = flat.abs().argsort(descending=True)[:k]
        out = []
        for i in order.tolist():
            idx = torch.unravel_index(torch.tensor(i), self.values.shape) if self.values.ndim else ()
            out.append(({d: self.labels[d][int(j)] for d, j in zip(self.dims, idx)}, float(flat[i])))
        return out

    def to_dataframe(self) -> Any:
        """One row per grid point: a label column per axis, ``value`` and ``raw``."""
        import pandas as pd

        rows = []
        for idx in itertools.product(*[range(n) for n in self.values.shape]):
            row: dict[str, Any] = {d: self.labels[d][i] for d, i in zip(self.dims, idx)}
            row.update({f"{d}_index": i for d, i in zip(self.dims, idx)})
            row["value"] = float(self.values[idx])
            row["raw"] = float(self.raw[idx])
            rows.append(row)
        return pd.DataFrame(rows)

    def _title(self) -> str:
        what = f"{self.ablation} ablation" if self.ablation else self.direction
        scale = " (normalised)" if self.normalised else ""
        return f"{self.method} patching: {self.site}, {what}{scale}"

    def _runs(self) -> tuple[str, str]:
        """The runs that 0 and 1 stand for: (unpatched base run, run patched from)."""
        if self.ablation or self.direction == "ablation":
            return "clean (unablated)", "corrupted"
        if self.direction == "noising":
            return "clean", "corrupted"
        return "corrupted", "clean"

    def scale_label(self) -> str:
        """What a value means, short (the colour bar's label).

        Example:
            >>> import torch
            >>> r = PatchResult(values=torch.zeros(2), raw=torch.zeros(2), dims=("layer",),
            ...                 labels={"layer": ["L0", "L1"]}, site="resid_pre", metric="logit_diff")
            >>> print(r.scale_label())
            normalised logit_diff
            0 = corrupted, 1 = clean
        """
        base, source = self._runs()
        metric = self.metric or "metric"
        if not self.normalised:
            return f"mean {metric} of the patched run"
        return f"normalised {metric}\n0 = {base.split(' ')[0]}, 1 = {source}"

    def caption(self) -> str:
        """One sentence saying what was patched, what the values are and the two reference runs' metric.

        Example:
            >>> import torch
            >>> r = PatchResult(values=torch.zeros(2), raw=torch.zeros(2), dims=("layer",),
            ...                 labels={"layer": ["L0", "L1"]}, site="resid_pre", metric="logit_diff",
            ...                 base_value=-1.5, target_value=3.0)
            >>> r.caption()
            'Activation patching of resid_pre (clean into corrupted) by layer. Values: mean logit_diff over prompts, normalised: 0 = the corrupted run (-1.5), 1 = the clean run (3).'
        """
        base, source = self._runs()
        metric = self.metric or "metric"
        if self.ablation or self.direction == "ablation":
            how = f"{self.ablation or ''} ablation".strip()
        elif self.direction == "noising":
            how = "corrupted into clean"
        else:
            how = "clean into corrupted"
        what = f"{self.method.replace('_', ' ').capitalize()} patching of {self.site} ({how}) by {' x '.join(self.dims) or 'nothing'}."
        source_part = f", the {source} run {self.target_value:.4g}" if self.target_value is not None else ""
        if self.normalised and self.target_value is not None:
            scale = (f"Values: mean {metric} over prompts, normalised: 0 = the {base} run ({self.base_value:.4g}), "
                     f"1 = the {source} run ({self.target_value:.4g}).")
        else:
            scale = f"Values: mean {metric} over prompts of each patched run (the {base} run {self.base_value:.4g}{source_part})."
        return f"{what} {scale}"

    def plot(self, ax: Any = None) -> Any:
        """A heatmap of :attr:`values` (see :meth:`to_matrix`), centred at 0; returns the figure."""
        matrix, rows, cols = self.to_matrix()
        if matrix.ndim == 2 and self.values.ndim >= 2:
            col = next((i for i, d in enumerate(self.dims) if d in _POS_AXES), self.values.ndim - 1) if self.values.ndim > 2 else 1
            xlabel = self.dims[col]
            ylabel = " x ".join(d for i, d in enumerate(self.dims) if i != col)
        else:
            xlabel, ylabel = (self.dims[0] if self.dims else ""), ""
        return heatmap(matrix, rows, cols, ax=ax, title=self._title(), xlabel=xlabel, ylabel=ylabel,
                       cbar_label=self.scale_label())

    def to_html(self) -> str:
        """The caption, the heatmap and the top entries, self-contained."""
        rows = [{**labels, "value": value} for labels, value in self.top(10)]
        return (
            f"<section><h3>{escape(self._title())}</h3><p class='muted'>{escape(self.caption())}</p>"
            f"{figure_to_img_tag(self.plot())}{table_html(rows)}</section>"
        )
