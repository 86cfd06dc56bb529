"""Result types of the lens family: :class:`LensResult`, :class:`LensComparison`,
:class:`DLAResult` and :class:`SteeringSweep` (frozen, JSON-serialisable, renderable)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError
from mechinterp.viz import escape, figure_to_img_tag, heatmap, html_page, table_html
from mechinterp.viz import pyplot

__all__ = ["LensResult", "LensComparison", "DLAResult", "SteeringSweep"]


def _tensor(value: Any, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.as_tensor(value, dtype=dtype)


@dataclass(frozen=True)
class LensResult(AbstractResult):
    """What each layer's residual predicts, read through a lens.

    Shapes are ``[row, prompt]`` (``positions="last"``) or ``[row, prompt, pos]``
    (``positions="all"``; ``mask`` marks real tokens, padded entries are 0).

    Attributes:
        method: ``"logit lens"`` or ``"tuned lens (affine|bias)"``.
        rows: row labels (``"resid_post 3"``, ``"final"``).
        top_ids, top_probs: the ``k`` most likely tokens per entry (``[..., k]``).
        answer_probs, answer_ranks: probability and rank (0 = top) of the answer (or of the
            model's own final top-1 token when no answer was given).
        kl: KL(final ‖ lens) in nats.
        mask: real-token mask, ``[prompt]`` or ``[prompt, pos]``.
        answers: the answer token strings (empty: the model's own top-1).
        vocab: token id -> string for every id in ``top_ids`` and the answers.
        prompts: the string tokens of the first prompts (up to 16), for display.
    """

    method: str
    rows: list[str]
    top_ids: Int[Tensor, "row ... k"]
    top_probs: Float[Tensor, "row ... k"]
    answer_probs: Float[Tensor, "row ..."]
    answer_ranks: Int[Tensor, "row ..."]
    kl: Float[Tensor, "row ..."]
    mask: Bool[Tensor, "..."]
    answers: list[str] = field(default_factory=list)
    vocab: dict[int, str] = field(default_factory=dict)
    prompts: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "top_ids", _tensor(self.top_ids, torch.long))
        object.__setattr__(self, "answer_ranks", _tensor(self.answer_ranks, torch.long))
        for name in ("top_probs", "answer_probs", "kl"):
            object.__setattr__(self, name, _tensor(getattr(self, name)))
        object.__setattr__(self, "mask", _tensor(self.mask, torch.bool))
        object.__setattr__(self, "vocab", {int(k): str(v) for k, v in self.vocab.items()})
        if self.kl.shape[0] != len(self.rows) or self.kl.shape[1:] != self.mask.shape:
            raise MechinterpError(f"kl {tuple(self.kl.shape)} does not match {len(self.rows)} rows × mask {tuple(self.mask.shape)}.")

    @property
    def per_position(self) -> bool:
        return self.mask.ndim == 2

    def _mean(self, values: Tensor) -> Float[Tensor, " row"]:
        m = self.mask.float()
        return (values * m).flatten(1).sum(1) / m.sum().clamp_min(1)

    def mean_kl(self) -> Float[Tensor, " row"]:
        """Mean KL(final ‖ lens) per row over real tokens."""
        return self._mean(self.kl)

    def mean_answer_prob(self) -> Float[Tensor, " row"]:
        """Mean answer probability per row over real tokens."""
        return self._mean(self.answer_probs)

    def top_tokens(self, prompt: int = 0, pos: int | None = None) -> list[list[tuple[str, float]]]:
        """Per row, the top-k ``(token, probability)`` of one prompt (and position)."""
        ids, probs = self.top_ids[:, prompt], self.top_probs[:, prompt]
        if self.per_position:
            if pos is None:
                raise MechinterpError("This result has every position: pass pos.")
            ids, probs = ids[:, pos], probs[:, pos]
        return [[(self.vocab.get(int(i), str(int(i))), float(p)) for i, p in zip(r_ids, r_probs)] for r_ids, r_probs in zip(ids, probs)]

    def plot(self, ax: Any = None, prompt: int = 0) -> Any:
        """Per-position results: rows × positions of one prompt, coloured by answer
        probability and labelled with the top-1 token. Last-position results: mean KL
        and answer probability per row."""
        if self.per_position:
            n_pos = int(self.mask[prompt].sum())
            fig = heatmap(self.answer_probs[:, prompt, :n_pos], row_labels=self.rows,
                          col_labels=(self.prompts[prompt][:n_pos] if prompt < len(self.prompts) else None),
                          ax=ax, title=f"{self.method}: answer probability (cells: top-1 token)", center=False,
                          cbar_label="answer probability", vmin=0.0, vmax=1.0)
            axis = fig.axes[0]
            fig.canvas.draw()  # the cell width, for how many characters of a token fit
            cell = axis.get_window_extent().width / fig.dpi / max(n_pos, 1)
            chars = max(1, min(8, int(cell / 0.05)))  # 6-point characters are ~0.05 in wide
            probs = self.answer_probs[:, prompt, :n_pos]
            for r in range(len(self.rows)):
                for p in range(n_pos):
                    token = self.vocab.get(int(self.top_ids[r, prompt, p, 0]), "?")
                    axis.text(p, r, token[:chars], ha="center", va="center", fontsize=6,  # readable on dark cells too
                              color="white" if float(probs[r, p]) < 0.5 else "black")
            return fig
        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 3))
        else:
            fig = ax.figure
        x = range(len(self.rows))
        blue, red = "#1f77b4", "#dc322f"  # each axis coloured as its line: no legend over the data
        ax.plot(x, self.mean_kl().numpy(), marker="o", color=blue, label="KL(final ‖ lens)")
        ax.set_xticks(list(x), labels=self.rows, rotation=90, fontsize=7)
        ax.set_ylabel("mean KL(final ‖ lens), nats (●)", color=blue)
        ax.tick_params(axis="y", colors=blue)
        ax2 = ax.twinx()
        ax2.plot(x, self.mean_answer_prob().numpy(), marker="s", color=red, label="answer prob")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("mean answer probability (■)", color=red)
        ax2.tick_params(axis="y", colors=red)
        ax.set_title(self.method)
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        """A table of rows: mean KL, answer probability and rank, and the first prompt's top tokens."""
        kl, prob = self.mean_kl(), self.mean_answer_prob()
        rank = self.answer_ranks.float()
        rank = self._mean(rank)
        first = self.top_tokens(0, int(self.mask[0].sum()) - 1 if self.per_position else None)
        rows = [{"row": label, "mean KL": float(kl[r]), "answer prob": float(prob[r]), "mean answer rank": float(rank[r]),
                 "top tokens (prompt 0)": ", ".join(f"{t!r} {p:.2f}" for t, p in first[r])} for r, label in enumerate(self.rows)]
        answer = f"answer {escape(self.answers[0])!s}" if self.answers else "answer = the model's own top-1"
        return f"<section><h3>{escape(self.method)}</h3><p class='muted'>{answer}</p>{table_html(rows)}</section>"

    def to_page(self, title: str | None = None) -> str:
        return html_page(title or self.method, self.to_html() + figure_to_img_tag(self.plot()))


@dataclass(frozen=True)
class LensComparison(AbstractResult):
    """Per-row KL to the final distribution and next-token perplexity of several lenses on held-out text.

    Attributes:
        rows: row labels.
        kl: lens name -> ``[row]`` mean KL(final ‖ lens) over real tokens, nats.
        perplexity: lens name -> ``[row]`` exp of the mean next-token cross-entropy.
        n_tokens: tokens averaged over.
    """

    rows: list[str]
    kl: dict[str, Float[Tensor, " row"]]
    perplexity: dict[str, Float[Tensor, " row"]]
    n_tokens: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "kl", {k: _tensor(v) for k, v in self.kl.items()})
        object.__setattr__(self, "perplexity", {k: _tensor(v) for k, v in self.perplexity.items()})

    def plot(self, ax: Any = None) -> Any:
        """KL per row, one line per lens (log scale)."""
        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 3))
        else:
            fig = ax.figure
        for name, values in self.kl.items():
            ax.plot(range(len(self.rows)), values.clamp_min(1e-6).numpy(), marker="o", label=name)
        ax.set_yscale("log")
        ax.set_xticks(range(len(self.rows)), labels=self.rows, rotation=90, fontsize=7)
        ax.set_ylabel("KL(final ‖ lens), nats")
        ax.legend()
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        rows = []
        for r, label in enumerate(self.rows):
            row: dict[str, Any] = {"row": label}
            for name in self.kl:
                row[f"KL {name}"] = float(self.kl[name][r])
                row[f"ppl {name}"] = float(self.perplexity[name][r])
            rows.append(row)
        return f"<section><h3>Lens comparison ({self.n_tokens} held-out tokens)</h3>{table_html(rows)}</section>"


@dataclass(frozen=True)
class DLAResult(AbstractResult):
    """Direct logit attribution: each component's direct contribution to a logit (difference).

    Convention: the final norm's scale is frozen at the clean run, so the target
    ``logit(answer) [- logit(wrong)]`` equals ``scores.sum(0) + constant`` exactly, where the
    components are the token embedding, the positional embedding (absolute models), every
    head (its ``z @ W_O``), every attention output bias, every MLP (or its neurons plus
    the MLP output bias), and ``constant`` is the unembedding bias plus the final norm's
    bias read through the unembedding.

    Attributes:
        components: labels (``"embed"``, ``"pos_embed"``, ``"L0H3"``, ``"L0 attn bias"``,
            ``"MLP2"`` or ``"L2N17"``, ...).
        scores: ``[component, prompt]`` (or ``[component, prompt, pos]``).
        constant: ``[prompt]`` (or ``[prompt, pos]``), the bias terms.
        target: ``[prompt]`` (or ``[prompt, pos]``), the model's own value of the target.
        target_label: e.g. ``"logit(' Paris') - logit(' Rome')"``.
        mask: real-token mask when per position.
        n_layers, n_heads: for the layer × head view.
    """

    components: list[str]
    scores: Float[Tensor, "component ..."]
    constant: Float[Tensor, "..."]
    target: Float[Tensor, "..."]
    target_label: str
    n_layers: int
    n_heads: int
    mask: Bool[Tensor, "..."] | None = None

    def __post_init__(self) -> None:
        for name in ("scores", "constant", "target"):
            object.__setattr__(self, name, _tensor(getattr(self, name)))
        if self.mask is not None:
            object.__setattr__(self, "mask", _tensor(self.mask, torch.bool))
        if self.scores.shape[0] != len(self.components):
            raise MechinterpError(f"scores {tuple(self.scores.shape)} do not match {len(self.components)} components.")

    def total(self) -> Float[Tensor, "..."]:
        """``scores.sum(0) + constant``: equals :attr:`target` up to float rounding."""
        return self.scores.sum(0) + self.constant

    def mean(self) -> Float[Tensor, " component"]:
        """Each component's mean score over prompts (and real positions)."""
        if self.mask is None:
            return self.scores.flatten(1).mean(1)
        m = self.mask.float()
        return (self.scores * m).flatten(1).sum(1) / m.sum().clamp_min(1)

    def __getitem__(self, component: str) -> Tensor:
        if component not in self.components:
            raise MechinterpError(f"Unknown component {component!r}; e.g. {self.components[:6]}.")
        return self.scores[self.components.index(component)]

    def head_matrix(self) -> Float[Tensor, "layer head_index"]:
        """Mean score of each head as ``[layer, head]``."""
        means = self.mean()
        out = torch.zeros(self.n_layers, self.n_heads)
        for l in range(self.n_layers):
            for h in range(self.n_heads):
                out[l, h] = means[self.components.index(f"L{l}H{h}")]
        return out

    def top_k(self, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` components with the largest mean magnitude, as ``(label, mean score)``."""
        means = self.mean()
        order = torch.argsort(means.abs(), descending=True)[:k]
        return [(self.components[int(i)], float(means[i])) for i in order]

    def plot(self, ax: Any = None) -> Any:
        """Layer × head heatmap of mean head scores."""
        return heatmap(self.head_matrix(), row_labels=[f"L{l}" for l in range(self.n_layers)],
                       col_labels=[f"H{h}" for h in range(self.n_heads)], ax=ax,
                       title=f"DLA: {self.target_label}", xlabel="head", ylabel="layer",
                       cbar_label="mean direct contribution (logits)")

    def to_html(self) -> str:
        rows = [{"component": c, "mean score": v} for c, v in self.top_k(15)]
        gap = float((self.total() - self.target).abs().max()) if self.target.numel() else 0.0
        return (f"<section><h3>Direct logit attribution: {escape(self.target_label)}</h3>"
                f"<p class='muted'>mean target {float(self.target.float().mean()):.4g}; components + constant "
                f"reproduce it to {gap:.2g}</p>{table_html(rows)}</section>")


@dataclass(frozen=True)
class SteeringSweep(AbstractResult):
    """A steering sweep: a task metric over layer × scale, with a random-vector control.

    Attributes:
        layers, scales: the grid.
        success: ``[layer, scale]`` fraction of prompts that reach the target label.
        metric: ``[layer, scale]`` mean task metric.
        random_success: ``[layer, scale]`` the same with a random vector of the same norm.
        baseline_success: fraction without steering.
        norms: ``[layer]`` the steering vector's norm.
        label: what was steered.
    """

    layers: list[int]
    scales: list[float]
    success: Float[Tensor, "layer scale"]
    metric: Float[Tensor, "layer scale"]
    random_success: Float[Tensor, "layer scale"]
    baseline_success: float
    norms: Float[Tensor, " layer"]
    label: str = ""

    def __post_init__(self) -> None:
        for name in ("success", "metric", "random_success", "norms"):
            object.__setattr__(self, name, _tensor(getattr(self, name)))

    def best(self) -> tuple[int, float, float]:
        """``(layer, scale, success)`` of the best cell."""
        flat = int(self.success.argmax())
        l, s = divmod(flat, len(self.scales))
        return self.layers[l], self.scales[s], float(self.success[l, s])

    def plot(self, ax: Any = None) -> Any:
        return heatmap(self.success, row_labels=[f"L{l}" for l in self.layers], col_labels=[f"{s:g}" for s in self.scales],
                       ax=ax, title=f"steering {self.label}: success", xlabel="scale", ylabel="layer", center=False,
                       cbar_label="success rate")

    def to_html(self) -> str:
        rows = []
        for i, l in enumerate(self.layers):
            for j, s in enumerate(self.scales):
                rows.append({"layer": l, "scale": s, "success": float(self.success[i, j]), "metric": float(self.metric[i, j]),
                             "random-vector success": float(self.random_success[i, j])})
        layer, scale, best = self.best()
        return (f"<section><h3>Steering sweep {escape(self.label)}</h3><p class='muted'>baseline success "
                f"{self.baseline_success:.3f}; best layer {layer}, scale {scale:g}: {best:.3f}</p>{table_html(rows)}</section>")
