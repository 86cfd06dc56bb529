"""Result objects of the probes family: sweeps and causal checks.

Both are frozen dataclasses on :class:`mechinterp.core.results.AbstractResult`
(``to_dict``/``save``/``load``/``_repr_html_``) with ``to_dataframe()``, ``plot()`` and
``to_html()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mechinterp.core.results import AbstractResult
from mechinterp.viz import escape, figure_to_img_tag, heatmap, pyplot, table_html

__all__ = ["SweepResult", "CausalResult"]


@dataclass(frozen=True)
class SweepResult(AbstractResult):
    """Held-out probe scores per (layer, position), with intervals and baselines.

    Attributes:
        probe: ``"logistic"``, ``"mass-mean"`` or ``"ridge"``.
        metric: ``"accuracy"`` or ``"r2"``.
        site, hook_names, layers, positions: what was probed.
        score, ci_low, ci_high: ``[layer][position]`` held-out score and its 95% interval.
        control, selectivity: the Hewitt–Liang control-task score and task − control.
        random, random_std: mean (sd) score of 1-D probes on random directions of the raw
            activation space (high when the property is the dominant direction of variance).
        random_whitened, random_whitened_std: the same on random directions of the whitened
            space (``Σ^{-1/2} r``): the near-chance baseline for "a direction not learned".
        majority: majority-class accuracy (0 for R²). chance: 1 / classes.
        n_examples, n_train, split, classes: the evaluation set-up.
    """

    probe: str
    metric: str
    site: str
    hook_names: list[str]
    layers: list[int]
    positions: list[str]
    score: list[list[float]]
    ci_low: list[list[float]]
    ci_high: list[list[float]]
    control: list[list[float]]
    selectivity: list[list[float]]
    random: list[list[float]]
    random_std: list[list[float]]
    majority: float
    chance: float
    n_examples: int
    n_train: int
    split: str
    classes: list[str] = field(default_factory=list)
    random_whitened: list[list[float]] = field(default_factory=list)
    random_whitened_std: list[list[float]] = field(default_factory=list)

    def to_dataframe(self) -> Any:
        """One row per (layer, position) with the score, interval and every baseline."""
        import pandas as pd

        rows = []
        for i, layer in enumerate(self.layers):
            for j, pos in enumerate(self.positions):
                rows.append({
                    "layer": layer, "position": pos, self.metric: self.score[i][j], "ci_low": self.ci_low[i][j],
                    "ci_high": self.ci_high[i][j], "control": self.control[i][j], "selectivity": self.selectivity[i][j],
                    "random_direction": self.random[i][j],
                    "random_whitened": self.random_whitened[i][j] if self.random_whitened else float("nan"),
                    "majority": self.majority,
                })
        return pd.DataFrame(rows)

    def best(self) -> tuple[int, str, float]:
        """``(layer, position, score)`` of the best cell."""
        s = np.asarray(self.score, dtype=float)
        i, j = np.unravel_index(np.nanargmax(s), s.shape)
        return self.layers[i], self.positions[j], float(s[i, j])

    def plot(self, ax: Any = None) -> Any:
        """Score by layer (one line per position, up to 6) with interval band and baselines; else a heatmap."""
        plt = pyplot()
        s = np.asarray(self.score, dtype=float)
        if len(self.positions) > 6:
            return heatmap(s, [f"L{l}" for l in self.layers], self.positions, ax=ax, center=False,
                           title=f"{self.probe} probe {self.metric} ({self.split})", xlabel="position", ylabel="layer",
                           cbar_label=self.metric)
        fig, ax = plt.subplots(figsize=(6, 3.6)) if ax is None else (ax.figure, ax)
        x = np.arange(len(self.layers))
        for j, pos in enumerate(self.positions):
            ax.plot(x, s[:, j], marker="o", label=f"probe ({pos})")
            ax.fill_between(x, np.asarray(self.ci_low)[:, j], np.asarray(self.ci_high)[:, j], alpha=0.2)
            ax.plot(x, np.asarray(self.control)[:, j], ls="--", marker="x", label=f"control task ({pos})")
            ax.plot(x, np.asarray(self.random)[:, j], ls=":", label=f"random direction ({pos})")
            if self.random_whitened:
                ax.plot(x, np.asarray(self.random_whitened)[:, j], ls="-.", label=f"random whitened direction ({pos})")
        if self.metric == "accuracy":
            ax.axhline(self.majority, color="grey", lw=1, label="majority class")
        ax.set_xticks(x, [str(l) for l in self.layers])
        ax.set_xlabel("layer")
        ax.set_ylabel(self.metric)
        ax.set_title(f"{self.probe} probe at {self.site.split('.')[-1]} ({self.split}, n={self.n_examples})")
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        df = self.to_dataframe().round(3)
        layer, pos, best = self.best()
        return (
            f"<section><h3>Probe sweep: {escape(self.probe)} ({escape(self.metric)})</h3>"
            f"<p class='muted'>{escape(self.split)}, {self.n_examples} held-out examples; best: layer {layer}, "
            f"position {escape(pos)}, {best:.3f}; majority {self.majority:.3f}</p>"
            f"{figure_to_img_tag(self.plot())}{table_html(df.to_dict('records'))}</section>"
        )


@dataclass(frozen=True)
class CausalResult(AbstractResult):
    """How the model's task metric moves when a probe direction is removed or added.

    Attributes:
        hook_name, positions: where the intervention was applied.
        metric_clean: mean task metric without intervention.
        metric_projected, flip_projected: after projecting the direction out.
        metric_random, flip_random: mean over projecting out random directions (control).
        scales, metric_steered, flip_steered: after adding ``scale * sign * direction``.
        n_prompts: prompts evaluated.
    """

    hook_name: str
    positions: str
    metric_clean: float
    metric_projected: float
    flip_projected: float
    metric_random: float
    flip_random: float
    scales: list[float]
    metric_steered: list[float]
    flip_steered: list[float]
    n_prompts: int

    def to_dataframe(self) -> Any:
        """One row per condition: clean, projected out, random projection, each steering scale."""
        import pandas as pd

        rows = [
            {"condition": "clean", "scale": 0.0, "metric": self.metric_clean, "flipped": 0.0},
            {"condition": "project out probe direction", "scale": np.nan, "metric": self.metric_projected, "flipped": self.flip_projected},
            {"condition": "project out random direction", "scale": np.nan, "metric": self.metric_random, "flipped": self.flip_random},
        ]
        rows += [{"condition": "steer", "scale": s, "metric": m, "flipped": f}
                 for s, m, f in zip(self.scales, self.metric_steered, self.flip_steered)]
        return pd.DataFrame(rows)

    def plot(self, ax: Any = None) -> Any:
        """Metric and flip rate against the steering scale, with the projection results as lines."""
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.6)) if ax is None else (ax.figure, ax)
        ax.plot(self.scales, self.metric_steered, marker="o", label="steered metric")
        ax.axhline(self.metric_clean, color="black", lw=1, label="clean")
        ax.axhline(self.metric_projected, color="tab:red", ls="--", label="probe direction projected out")
        ax.axhline(self.metric_random, color="grey", ls=":", label="random direction projected out")
        ax.set_xlabel("steering scale")
        ax.set_ylabel("task metric (mean)")
        twin = ax.twinx()
        twin.plot(self.scales, self.flip_steered, color="tab:green", marker="x", label="fraction flipped")
        twin.set_ylabel("fraction of predictions flipped")
        twin.set_ylim(0, 1)
        # one legend for both axes, below the plot: inside, "best" placement only avoided the left axis's
        # lines and sat on the flip-rate curve
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
        ax.set_title(f"causal check at {self.hook_name} ({self.positions})")
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        df = self.to_dataframe().round(3)
        return (f"<section><h3>Causal check at {escape(self.hook_name)}</h3>"
                f"{figure_to_img_tag(self.plot())}{table_html(df.to_dict('records'))}</section>")
