"""The answer lens: the logit lens read at the answer tokens only, without decoding the vocabulary.

:func:`logit_lens` decodes every layer's residual into the whole vocabulary, because KL,
probabilities and ranks need every logit. Often the question is narrower: *from which layer
on does the model prefer the answer?* — the logit of the answer, or the logit difference
``logit(answer) - logit(wrong)`` of an IOI-style task, per layer. That needs one dot
product per row with ``W_U[:, answer] - W_U[:, wrong]``, so on a model with a large
vocabulary it costs a small fraction of the full lens (SmolLM2, 49k tokens: the full lens
decodes ~0.85 G multiply-adds per prompt, this one ~0.02 M).

Two conventions for the final norm:

* ``norm="live"`` (default, the logit lens's; TransformerLens 3.9's
  ``accumulated_resid(apply_ln=True)``): each row goes through ``ln_final`` with its own
  scale, as if it were the last layer. The last row equals the model's own logit
  (difference), and every row equals what :func:`logit_lens` would decode at the answer.
* ``norm="frozen"`` (TransformerLens's ``apply_ln_to_stack(recompute_ln=False)``, the
  convention of the original IOI notebooks): every row is normalised with the *final*
  residual's scale, so the norm is linear and the change from one row to the next is
  exactly the direct logit attribution of the components in between
  (:func:`direct_logit_attribution`).

Example:
    >>> import mechinterp
    >>> from mechinterp.lens import answer_lens
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> res = answer_lens(model, ["The capital of France is"], "Paris", wrong="Rome")
    >>> res.values.shape  # [row, prompt]: 4 resid_post rows
    torch.Size([4, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from mechinterp.core.precision import runs_synced
from mechinterp.core.results import AbstractResult
from mechinterp.core.validation import check_count, check_token_ids
from mechinterp.errors import MechinterpError
from mechinterp.lens.dla import effective_direction, logit_direction, target_label
from mechinterp.lens.readout import answer_ids, as_cache, check_linear_head, norm_bias, residual_rows
from mechinterp.viz import escape, figure_to_img_tag, html_page, pyplot, table_html

__all__ = ["answer_lens", "AnswerLensResult"]

#: token vectors read per chunk (bounds memory on a spilled cache)
CHUNK_TOKENS = 65536


@dataclass(frozen=True)
class AnswerLensResult(AbstractResult):
    """The answer logit (or logit difference) each layer's residual predicts.

    Attributes:
        method: ``"answer lens (live norm)"`` or ``"answer lens (frozen norm)"``.
        rows: row labels (``"resid_post 3"``, ``"final"``).
        values: ``[row, prompt]`` (or ``[row, prompt, pos]``; padded entries 0).
        target_label: e.g. ``"logit(' Paris') - logit(' Rome')"``.
        mask: real-token mask, ``[prompt]`` or ``[prompt, pos]``.
        prompts: the string tokens of the first prompts (up to 16), for display.
    """

    method: str
    rows: list[str]
    values: Float[Tensor, "row ..."]
    target_label: str
    mask: Bool[Tensor, "..."]
    prompts: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", torch.as_tensor(self.values, dtype=torch.float32))
        object.__setattr__(self, "mask", torch.as_tensor(self.mask, dtype=torch.bool))
        if self.values.shape[0] != len(self.rows) or self.values.shape[1:] != self.mask.shape:
            raise MechinterpError(f"values {tuple(self.values.shape)} do not match {len(self.rows)} rows × mask "
                                  f"{tuple(self.mask.shape)}.")

    def mean(self) -> Float[Tensor, " row"]:
        """Mean value per row over prompts (and real positions)."""
        m = self.mask.float()
        return (self.values * m).flatten(1).sum(1) / m.sum().clamp_min(1)

    def first_row_above(self, threshold: float = 0.0) -> str | None:
        """The first row whose mean value exceeds ``threshold`` and stays above it, or ``None``."""
        means = self.mean()
        for r in range(len(self.rows)):
            if bool((means[r:] > threshold).all()):
                return self.rows[r]
        return None

    def plot(self, ax: Any = None) -> Any:
        """Mean value per row, with each prompt (up to 32, last position) as a faint line."""
        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 3))
        else:
            fig = ax.figure
        x = list(range(len(self.rows)))
        if self.mask.ndim == 1:
            for p in range(min(32, self.values.shape[1])):
                ax.plot(x, self.values[:, p].numpy(), color="#93a1a1", linewidth=0.6, alpha=0.6)
        ax.plot(x, self.mean().numpy(), marker="o", color="#268bd2", label="mean")
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xticks(x, labels=self.rows, rotation=90, fontsize=7)
        ax.set_ylabel(self.target_label)
        ax.set_title(self.method)
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        means = self.mean()
        rows = [{"row": label, "mean": float(means[r])} for r, label in enumerate(self.rows)]
        first = self.first_row_above(0.0)
        note = f"positive from {escape(first)} on" if first is not None else "not positive at the last row"
        return (f"<section><h3>{escape(self.method)}: {escape(self.target_label)}</h3>"
                f"<p class='muted'>mean over {int(self.mask.sum())} tokens; {note}</p>{table_html(rows)}</section>")

    def to_page(self, title: str | None = None) -> str:
        return html_page(title or self.method, self.to_html() + figure_to_img_tag(self.plot()))


@runs_synced
def answer_lens(
    model: Any,
    inputs: Any,
    answers: Sequence[str] | Tensor | str,
    *,
    wrong: Sequence[str] | Tensor | str | None = None,
    norm: str = "live",
    site: str = "resid_post",
    positions: Any = "last",
    batch_size: int = 32,
) -> AnswerLensResult:
    """Read ``logit(answer)`` (or ``logit(answer) - logit(wrong)``) off every layer's residual.

    Args:
        model: a ``HookedTransformer``.
        inputs: prompts, or a :class:`~mechinterp.core.cache.SharedCache` of this model
            (positions ``"last"`` or ``"all"``).
        answers: one answer per prompt (strings or ids), or one for all.
        wrong: the other side of a logit difference (same forms), or ``None``.
        norm: ``"live"`` (each row through the final norm with its own scale, as the logit
            lens does) or ``"frozen"`` (the final residual's scale for every row, so rows
            differ by exactly the direct logit attribution of the layers in between).
        site: ``"resid_pre"``, ``"resid_mid"`` or ``"resid_post"`` (``"final"`` row added
            for the first two).
        positions: ``"last"`` (default) or ``"all"`` when ``inputs`` are prompts.
        batch_size: prompts per forward pass when a cache is built.

    Returns:
        An :class:`AnswerLensResult`; with ``norm="live"`` its last row is the model's own
        value.

    Raises:
        MechinterpError: an unknown ``norm``, a model with a logit soft cap, a cache with
            other positions, or bad answers.
    """
    check_count(batch_size, "batch_size")
    if norm not in ("live", "frozen"):
        raise MechinterpError(f"norm must be 'live' or 'frozen', got {norm!r}.")
    if isinstance(inputs, Tensor):
        check_token_ids(model, inputs, "inputs")
    check_linear_head(model)
    rows = residual_rows(model, site)
    cache = as_cache(model, inputs, positions, batch_size)
    if not isinstance(cache.positions, str):
        raise MechinterpError("The answer lens reads caches with positions='last' or 'all'; build the SharedCache "
                              "with one of them.")
    final_hook = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    cache.fetch(list(dict.fromkeys([*(h for _, h in rows), final_hook])))
    n = len(cache)
    ans = answer_ids(model, answers, n)
    bad = answer_ids(model, wrong, n) if wrong is not None else None
    dev = model.cfg.device
    direction, bias = logit_direction(model, ans, bad)  # [n, d_model], [n]
    per_pos = cache.positions == "all"
    mask = cache.attention_mask.bool() if per_pos else torch.ones(n, dtype=torch.bool)
    extra = 1 if per_pos else 0
    d = direction.view(n, *([1] * extra), -1)
    b = bias.view(n, *([1] * extra))
    kind = model.cfg.normalization_type
    values = torch.zeros(len(rows), *mask.shape)
    step = max(1, CHUNK_TOKENS // mask[0].numel())  # prompts per chunk: a spilled cache is read a slice at a time
    with torch.inference_mode():
        for start in range(0, n, step):
            sl = slice(start, min(n, start + step))
            d_c, b_c = d[sl], b[sl]
            if norm == "frozen":
                e = effective_direction(model, direction[sl]).view(-1, *([1] * extra), direction.shape[-1])
                scale = _scale(model, cache.get(final_hook)[sl].to(dev).float())  # [m, *pos]
                b_c = b_c + (direction[sl] @ norm_bias(model).float()).view(-1, *([1] * extra))
            for r, (_, hook) in enumerate(rows):
                x = cache.get(hook)[sl].to(dev)
                if norm == "frozen":
                    v = (x.float() * e).sum(-1) / scale
                else:
                    normed = model.ln_final(x) if kind is not None else x
                    v = (normed.float() * d_c).sum(-1)
                values[r, sl] = (v + b_c).cpu()
    stacked = values * mask
    return AnswerLensResult(method=f"answer lens ({norm} norm)", rows=[label for label, _ in rows], values=stacked,
                            target_label=target_label(model, ans, bad), mask=mask,
                            prompts=[cache.str_tokens(i) for i in range(min(n, 16))])


def _scale(model: Any, final: Float[Tensor, "... d_model"]) -> Float[Tensor, "..."]:
    """The final norm's scale on the final residual (``ln_final.hook_scale``); 1 without a norm."""
    kind = model.cfg.normalization_type
    if kind is None:
        return torch.ones(final.shape[:-1], device=final.device)
    x = final - final.mean(-1, keepdim=True) if kind in ("LN", "LNPre") else final
    scale = (x.pow(2).mean(-1) + model.cfg.eps).sqrt()
    return torch.where(scale > 0, scale, torch.ones_like(scale))  # padding positions (zeroed in the cache)
