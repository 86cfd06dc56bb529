"""Result types of activation maximisation: :class:`MaxActivations` and :class:`OptimisedInput`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError
from mechinterp.viz import escape, figure_to_img_tag, html_page, table_html, tokens_html
from mechinterp.viz import pyplot

__all__ = ["MaxActivations", "OptimisedInput"]


@dataclass(frozen=True)
class MaxActivations(AbstractResult):
    """The top-k (prompt, position) contexts of a dataset for one activation target.

    Attributes:
        target: the target's label.
        values: ``[k]`` the activation at the example's position, highest first.
        prompt_index, position: ``[k]`` where each example sits in the prompt set.
        tokens: per example, the prompt's string tokens up to and including ``position``.
        activations: per example, the target's activation at every one of those tokens.
        n_prompts, n_tokens: how much was scanned.
    """

    target: str
    values: Float[Tensor, " k"]
    prompt_index: Int[Tensor, " k"]
    position: Int[Tensor, " k"]
    tokens: list[list[str]]
    activations: list[list[float]]
    n_prompts: int
    n_tokens: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", torch.as_tensor(self.values, dtype=torch.float32))
        object.__setattr__(self, "prompt_index", torch.as_tensor(self.prompt_index, dtype=torch.long))
        object.__setattr__(self, "position", torch.as_tensor(self.position, dtype=torch.long))
        if not len(self.values) == len(self.tokens) == len(self.activations) == len(self.position):
            raise MechinterpError("values, positions, tokens and activations must have one entry per example.")

    def __len__(self) -> int:
        return len(self.values)

    def examples(self) -> list[tuple[float, str, str]]:
        """``(value, context, token at the position)`` per example."""
        return [(float(v), "".join(t) if _subword(t) else " ".join(t), t[-1]) for v, t in zip(self.values, self.tokens)]

    def plot(self, ax: Any = None) -> Any:
        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 0.3 * len(self) + 1.2))
        else:
            fig = ax.figure
        labels = [f"{int(p)}:{t[-1]!r}" for p, t in zip(self.prompt_index, self.tokens)]
        ax.barh(range(len(self))[::-1], self.values.numpy(), color="#dc322f")
        ax.set_yticks(range(len(self))[::-1], labels=labels, fontsize=7)
        ax.set_title(f"max activations: {self.target}")
        ax.set_xlabel("activation")
        ax.set_ylabel("prompt:token")
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        """Each example's context, tokens coloured by the activation (the maximising token last)."""
        blocks = "".join(
            tokens_html(toks, acts, title=f"#{i + 1}: {float(v):.4g} (prompt {int(p)}, position {int(pos)})")
            for i, (toks, acts, v, p, pos) in enumerate(zip(self.tokens, self.activations, self.values, self.prompt_index, self.position))
        )
        return (f"<section><h3>Max-activating examples: {escape(self.target)}</h3><p class='muted'>{self.n_prompts} prompts, "
                f"{self.n_tokens} tokens scanned</p>{blocks}</section>")

    def to_page(self, title: str | None = None) -> str:
        return html_page(title or f"max activations: {self.target}", self.to_html() + figure_to_img_tag(self.plot()))


@dataclass(frozen=True)
class OptimisedInput(AbstractResult):
    """An input found by optimisation to maximise an activation target.

    Attributes:
        target: the target's label.
        tokens: the whole input's string tokens (fixed prefix/suffix included).
        token_ids: ``[pos]`` the whole input's ids.
        optimised_positions: which positions were searched.
        value: the target's activation at ``position``.
        position: where it is read.
        history: the best value after each step.
        best_dataset_value: the top dataset example's value when a reference was given.
        method: ``"coordinate search"`` (gradient-guided, GCG-style).
    """

    target: str
    tokens: list[str]
    token_ids: Int[Tensor, " pos"]
    optimised_positions: list[int]
    value: float
    position: int
    history: list[float] = field(default_factory=list)
    best_dataset_value: float | None = None
    method: str = "coordinate search"

    def __post_init__(self) -> None:
        object.__setattr__(self, "token_ids", torch.as_tensor(self.token_ids, dtype=torch.long))

    @property
    def optimised_tokens(self) -> list[str]:
        return [self.tokens[i] for i in self.optimised_positions]

    def plot(self, ax: Any = None) -> Any:
        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(5, 3))
        else:
            fig = ax.figure
        ax.plot(self.history, label="optimised")
        if self.best_dataset_value is not None:
            ax.axhline(self.best_dataset_value, color="#dc322f", ls="--", label="best dataset example")
        ax.set_xlabel("step")
        ax.set_ylabel("activation")
        ax.set_title(self.target)
        ax.legend()
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        marks = [1.0 if i in self.optimised_positions else 0.0 for i in range(len(self.tokens))]
        rows = [{"value": self.value, "best dataset example": self.best_dataset_value if self.best_dataset_value is not None else "",
                 "steps": len(self.history), "method": self.method}]
        return (f"<section><h3>Optimised input: {escape(self.target)}</h3>{tokens_html(self.tokens, marks, title='searched tokens in red')}"
                f"{table_html(rows)}</section>")


def _subword(tokens: list[str]) -> bool:
    return any(t.startswith(" ") for t in tokens)
