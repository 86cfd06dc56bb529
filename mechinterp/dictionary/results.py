"""Result objects of the dictionary family: a training run's log and an SAE's evaluation.

Frozen dataclasses on :class:`mechinterp.core.results.AbstractResult` (``to_dict``,
``save``/``load``, ``_repr_html_``) with ``plot()`` and offline ``to_html()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mechinterp.core.results import AbstractResult
from mechinterp.viz import escape, figure_to_img_tag, table_html

__all__ = ["TrainingLog", "SAEEvaluation"]


def pyplot() -> Any:
    from mechinterp.viz import pyplot as get

    return get()


@dataclass(frozen=True)
class TrainingLog(AbstractResult):
    """The history of one :func:`~mechinterp.dictionary.train_sae` run.

    Attributes:
        architecture, hook_name, hook_name_out, d_in, d_sae: what was trained.
        n_steps, n_tokens, seconds, tokens_per_second: the run's size and speed.
        lr: the learning rate used. scale_in, scale_out: the input scalings (folded into the
            saved weights).
        never_fired_fraction: latents that never fired during the whole run.
        n_resampled: dead latents re-initialised during the run (``resample_every``).
        config: the :class:`~mechinterp.dictionary.TrainConfig` as a dict.
        step, tokens, loss, mse, l0, explained_variance, dead_fraction: one entry per
            ``log_every`` steps (MSE on scaled inputs; explained variance per batch).
    """

    architecture: str
    hook_name: str | None
    hook_name_out: str | None
    d_in: int
    d_sae: int
    n_steps: int
    n_tokens: int
    seconds: float
    tokens_per_second: float
    lr: float
    scale_in: float
    scale_out: float
    never_fired_fraction: float
    n_resampled: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    step: list[float] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    mse: list[float] = field(default_factory=list)
    l0: list[float] = field(default_factory=list)
    explained_variance: list[float] = field(default_factory=list)
    dead_fraction: list[float] = field(default_factory=list)

    def plot(self, ax: Any = None) -> Any:
        plt = pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(11, 3))
        for a, key in zip(axes, ("loss", "explained_variance", "l0")):
            a.plot(self.tokens, getattr(self, key))
            a.set_xlabel("tokens")
            a.set_title(key.replace("_", " "))
        fig.suptitle(f"{self.architecture} SAE on {self.hook_name}")
        fig.tight_layout()
        return fig

    def summary(self) -> dict[str, Any]:
        speed = self.tokens_per_second  # infinite when the run took no measurable time: keep it, round() would raise
        return {
            "architecture": self.architecture, "site": self.hook_name, "d_in": self.d_in, "d_sae": self.d_sae,
            "steps": self.n_steps, "tokens": self.n_tokens, "tokens/s": round(speed) if math.isfinite(speed) else speed,
            "final explained variance": self.explained_variance[-1] if self.explained_variance else float("nan"),
            "final L0": self.l0[-1] if self.l0 else float("nan"), "never fired": self.never_fired_fraction,
        }

    def to_html(self) -> str:
        return (f"<div><h3>SAE training: {escape(self.architecture)} on {escape(self.hook_name)}</h3>"
                f"{table_html([self.summary()])}{figure_to_img_tag(self.plot())}</div>")


@dataclass(frozen=True)
class SAEEvaluation(AbstractResult):
    """How well an SAE reconstructs its site and how little splicing it in hurts the model.

    Attributes:
        hook_name, architecture, d_sae, n_tokens: what was evaluated, on how many tokens.
        l0: mean number of active latents per token.
        explained_variance: ``1 - Σ‖x - x̂‖² / Σ‖x - x̄‖²`` over all tokens.
        mse: mean squared error per token (summed over dimensions).
        ce_clean, ce_spliced, ce_zero_ablation: mean next-token loss of the model as it is,
            with the reconstruction in place of the activation (error dropped), and with the
            activation zeroed.
        ce_loss_recovered: ``(ce_zero - ce_spliced) / (ce_zero - ce_clean)`` (1 = perfect).
        kl_spliced: mean KL(clean ‖ spliced) of the next-token distributions.
        frequency: per-latent firing frequency (fraction of tokens).
        dead_fraction: latents that never fired. dense_fraction: latents firing on more than
            ``dense_threshold`` of the tokens.
        histogram_edges, histogram_counts: histogram of log10 frequencies of the live latents.
    """

    hook_name: str | None
    architecture: str
    d_sae: int
    n_tokens: int
    l0: float
    explained_variance: float
    mse: float
    ce_clean: float
    ce_spliced: float
    ce_zero_ablation: float
    ce_loss_recovered: float
    kl_spliced: float
    dead_fraction: float
    dense_fraction: float
    dense_threshold: float
    frequency: list[float] = field(default_factory=list)
    histogram_edges: list[float] = field(default_factory=list)
    histogram_counts: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "site": self.hook_name, "architecture": self.architecture, "d_sae": self.d_sae, "tokens": self.n_tokens,
            "L0": self.l0, "explained variance": self.explained_variance, "CE clean": self.ce_clean,
            "CE spliced": self.ce_spliced, "CE zero-ablated": self.ce_zero_ablation,
            "CE loss recovered": self.ce_loss_recovered, "KL spliced": self.kl_spliced,
            "dead": self.dead_fraction, "dense": self.dense_fraction,
        }

    def plot(self, ax: Any = None) -> Any:
        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(5, 3))
        else:
            fig = ax.figure
        edges = self.histogram_edges
        if self.histogram_counts:
            ax.bar(edges[:-1], self.histogram_counts, width=[b - a for a, b in zip(edges[:-1], edges[1:])], align="edge")
        ax.set_xlabel("log10 firing frequency")
        ax.set_ylabel("latents")
        ax.set_title(f"latent frequencies ({self.dead_fraction:.1%} dead)")
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        return (f"<div><h3>SAE evaluation on {escape(self.hook_name)}</h3>{table_html([self.summary()])}"
                f"{figure_to_img_tag(self.plot())}</div>")
