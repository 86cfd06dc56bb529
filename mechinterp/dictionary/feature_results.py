"""Result objects of the feature-level methods: latent attribution, latent DLA, logit effects.

Frozen dataclasses on :class:`mechinterp.core.results.AbstractResult` (``to_dict``,
``save``/``load``, ``_repr_html_``) with ``plot()`` and offline ``to_html()``. Feature
patching returns patching's own :class:`~mechinterp.patching.PatchResult`; the dashboard's
result is :class:`~mechinterp.dictionary.dashboard.LatentDashboard`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError
from mechinterp.viz import escape, figure_to_img_tag, pyplot, table_html

__all__ = ["FeatureAttribution", "LatentDLA", "LogitEffects"]


def _short(hook: str) -> str:
    return hook.replace("blocks.", "L").replace(".hook_", ".").replace("hook_", "")


def _bars(labels: list[str], values: list[float], title: str, ax: Any = None, xlabel: str = "") -> Any:
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 0.28 * len(labels) + 1.2))
    else:
        fig = ax.figure
    colors = ["#dc322f" if v >= 0 else "#268bd2" for v in values]
    ax.barh(range(len(values))[::-1], values, color=colors)
    ax.set_yticks(range(len(values))[::-1], labels=labels, fontsize=7)
    ax.axvline(0, color="#888", lw=0.5)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    fig.tight_layout()
    return fig


@dataclass(frozen=True, eq=False)
class FeatureAttribution(AbstractResult):
    """First-order effects of SAE latents and error terms on a metric (sparse feature circuits' nodes).

    Attributes:
        hooks: each SAE's output hook, in the order given.
        scores: per SAE ``[pos, d_sae]``: ``(f_src - f_base) · ∂m̄/∂f`` summed over prompts
            (the metric's mean over prompts, so the scores are in metric units).
        error_scores: ``[n_saes, pos]`` the same for each SAE's error term.
        tokens: the string tokens of prompt 0.
        metric, direction, ablation: as in patching.
        base_value: mean metric of the base run.
        target_value: mean metric of the run patched from (``None`` for an ablation without one).
    """

    hooks: list[str]
    scores: list[Tensor]
    error_scores: Float[Tensor, "sae pos"]
    tokens: list[str] = field(default_factory=list)
    metric: str = ""
    direction: str = "denoising"
    ablation: str | None = None
    base_value: float = 0.0
    target_value: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", [torch.as_tensor(s, dtype=torch.float32) for s in self.scores])
        object.__setattr__(self, "error_scores", torch.as_tensor(self.error_scores, dtype=torch.float32))
        if len(self.scores) != len(self.hooks) or self.error_scores.shape[0] != len(self.hooks):
            raise MechinterpError("FeatureAttribution needs one scores tensor and one error row per hook.")

    def total(self) -> float:
        """The sum of every node's score: the first-order estimate of ``m_source - m_base``."""
        return float(sum(float(s.sum()) for s in self.scores) + float(self.error_scores.sum()))

    def by_latent(self, sae: int = 0) -> Float[Tensor, " d_sae"]:
        """One SAE's latent scores summed over positions."""
        return self.scores[sae].sum(0)

    def top(self, k: int = 10, *, errors: bool = True) -> list[dict[str, Any]]:
        """The ``k`` nodes of largest ``|score|``: ``{"hook", "pos", "latent" (or "error"), "score"}``."""
        rows: list[dict[str, Any]] = []
        for s, (hook, sc) in enumerate(zip(self.hooks, self.scores)):
            flat = sc.flatten()
            for i in flat.abs().argsort(descending=True)[:k].tolist():
                p, latent = divmod(i, sc.shape[1])
                rows.append({"hook": hook, "pos": p, "latent": latent, "score": float(flat[i])})
            if errors:
                rows += [{"hook": hook, "pos": p, "latent": "error", "score": float(v)} for p, v in enumerate(self.error_scores[s])]
        rows.sort(key=lambda r: -abs(r["score"]))
        return rows[:k]

    def _label(self, row: dict[str, Any]) -> str:
        tok = self.tokens[row["pos"]] if row["pos"] < len(self.tokens) else ""
        return f"{_short(row['hook'])}/{row['latent']} @{row['pos']}:{tok!r}"

    def plot(self, ax: Any = None) -> Any:
        rows = self.top(15)
        return _bars([self._label(r) for r in rows], [r["score"] for r in rows], f"feature attribution ({self.metric})", ax,
                     xlabel=f"first-order effect on the mean {self.metric}")

    def to_html(self) -> str:
        rows = [{"node": self._label(r), "score": r["score"]} for r in self.top(15)]
        head = (f"base metric {self.base_value:.4g}" + (f", target {self.target_value:.4g}" if self.target_value is not None else "")
                + f", sum of scores {self.total():.4g}")
        return (f"<section><h3>Feature attribution: {escape(', '.join(map(_short, self.hooks)))}</h3>"
                f"<p class='muted'>{escape(self.metric)}; {escape(self.ablation or self.direction)}; {escape(head)}</p>"
                f"{figure_to_img_tag(self.plot())}{table_html(rows)}</section>")


@dataclass(frozen=True, eq=False)
class LatentDLA(AbstractResult):
    """Direct logit attribution of SAE latents: what each writes straight into a logit (difference).

    With the final norm's scale frozen at the clean run, the SAE's site output splits exactly
    into its latents, its decoder bias and its error term; ``total() == site_total``.

    Attributes:
        hook: the SAE's output hook.
        latents: the latents reported.
        scores: ``[latent, batch, *pos]`` each latent's direct contribution.
        other: ``[batch, *pos]`` the latents not reported, together.
        bias: ``[batch, *pos]`` the decoder bias ``b_dec``'s contribution.
        error: ``[batch, *pos]`` the error term's contribution.
        site_total: ``[batch, *pos]`` the site output's direct contribution.
        target_label: ``"logit(' Paris') - logit(' Rome')"``.
    """

    hook: str
    latents: list[int]
    scores: Tensor
    other: Tensor
    bias: Tensor
    error: Tensor
    site_total: Tensor
    target_label: str = ""

    def __post_init__(self) -> None:
        for name in ("scores", "other", "bias", "error", "site_total"):
            object.__setattr__(self, name, torch.as_tensor(getattr(self, name), dtype=torch.float32))
        if self.scores.shape[0] != len(self.latents):
            raise MechinterpError("LatentDLA.scores needs one row per latent.")

    def total(self) -> Tensor:
        """``scores.sum(0) + other + bias + error`` (equals :attr:`site_total`)."""
        return self.scores.sum(0) + self.other + self.bias + self.error

    def mean_scores(self) -> Float[Tensor, " latent"]:
        """Each latent's contribution averaged over prompts (and positions)."""
        return self.scores.reshape(len(self.latents), -1).mean(1)

    def top(self, k: int = 10) -> list[tuple[int, float]]:
        """``(latent, mean contribution)`` for the ``k`` latents of largest ``|mean|``."""
        mean = self.mean_scores()
        return [(self.latents[i], float(mean[i])) for i in mean.abs().argsort(descending=True)[:k].tolist()]

    def plot(self, ax: Any = None) -> Any:
        rows = self.top(15)
        return _bars([f"latent {i}" for i, _ in rows], [v for _, v in rows], f"latent DLA: {self.target_label}", ax,
                     xlabel="mean direct contribution (logits)")

    def to_html(self) -> str:
        parts = [{"part": "reported latents", "mean": float(self.scores.sum(0).mean())},
                 {"part": "other latents", "mean": float(self.other.mean())},
                 {"part": "decoder bias", "mean": float(self.bias.mean())}, {"part": "error term", "mean": float(self.error.mean())},
                 {"part": "site total", "mean": float(self.site_total.mean())}]
        rows = [{"latent": i, "mean contribution": v} for i, v in self.top(15)]
        return (f"<section><h3>Latent DLA at {escape(self.hook)}: {escape(self.target_label)}</h3>{table_html(parts)}"
                f"{figure_to_img_tag(self.plot())}{table_html(rows)}</section>")


@dataclass(frozen=True, eq=False)
class LogitEffects(AbstractResult):
    """Each latent's decoder direction read through the final norm's weight and the unembedding.

    ``effect = norm_linear(W_dec[i], scale=1) @ W_U``: the logits one unit of the latent adds
    directly, before the final norm's division by the residual's scale.

    Attributes:
        hook: the SAE's output hook.
        latents: the latents.
        top_tokens, top_values: per latent the ``k`` tokens it promotes most.
        bottom_tokens, bottom_values: per latent the ``k`` it suppresses most.
    """

    hook: str
    latents: list[int]
    top_tokens: list[list[str]]
    top_values: Tensor
    bottom_tokens: list[list[str]]
    bottom_values: Tensor

    def __post_init__(self) -> None:
        object.__setattr__(self, "top_values", torch.as_tensor(self.top_values, dtype=torch.float32))
        object.__setattr__(self, "bottom_values", torch.as_tensor(self.bottom_values, dtype=torch.float32))
        if not len(self.latents) == len(self.top_tokens) == len(self.bottom_tokens) == self.top_values.shape[0]:
            raise MechinterpError("LogitEffects needs one row of tokens and values per latent.")

    def rows(self, latent: int) -> list[dict[str, Any]]:
        """A table of the latent's promoted and suppressed tokens."""
        if latent not in self.latents:
            raise MechinterpError(f"latent {latent} is not in this result; it holds {self.latents}.")
        j = self.latents.index(latent)
        return [{"promotes": t, "+logit": float(v), "suppresses": b, "-logit": float(w)}
                for t, v, b, w in zip(self.top_tokens[j], self.top_values[j], self.bottom_tokens[j], self.bottom_values[j])]

    def plot(self, ax: Any = None) -> Any:
        j = 0
        labels = [repr(t) for t in self.top_tokens[j]] + [repr(t) for t in self.bottom_tokens[j]][::-1]
        values = self.top_values[j].tolist() + self.bottom_values[j].tolist()[::-1]
        return _bars(labels, values, f"logit effects of latent {self.latents[j]}", ax,
                     xlabel="logit change per unit of the latent")

    def to_html(self) -> str:
        blocks = "".join(f"<h4>latent {i}</h4>{table_html(self.rows(i))}" for i in self.latents)
        return f"<section><h3>Logit effects at {escape(self.hook)}</h3>{blocks}</section>"
