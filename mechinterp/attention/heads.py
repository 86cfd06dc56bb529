"""Head detection: how much each (layer, head) behaves like a known kind of head.

For every prompt a *detection pattern* ``D[q, k]`` marks where a head of each kind should
attend (the same patterns as TransformerLens's ``head_detector``):

* ``previous_token``: ``k = q - 1``;
* ``duplicate_token``: ``k < q`` with ``token[k] == token[q]``;
* ``induction``: ``1 <= k <= q`` with ``token[k - 1] == token[q]`` (the token after an
  earlier copy of the current one);
* ``first_token``: ``k = 0`` for ``q >= 1`` — attention to the first token / BOS, the
  "attention sink".

Two measures turn a pattern ``A`` into a score:

* ``"row"`` (default): the mean over the query rows that *have* a target (``Σ_k D[q,k] > 0``)
  of the attention on the targets, ``Σ_k A[q,k] D[q,k]``, pooled over prompts. In
  ``[0, 1]``; 1 is a perfect head. Rows without any target (no earlier duplicate, say) do
  not dilute the score.
* ``"tl"``: TransformerLens's ``detect_head(error_measure="mul")`` exactly:
  ``Σ_{q,k} A⊙D / Σ_{q,k} A`` per prompt, averaged over prompts.

``exclude_bos`` / ``exclude_current_token`` zero the attention to the first token / the
diagonal first and renormalise (as in TransformerLens). Patterns are read through the
shared cache in batches and scored for all heads at once; :func:`probe_sequences` makes
``[BOS] + A + A`` inputs on which all four kinds are defined.

Example:
    >>> import mechinterp
    >>> from mechinterp.attention import head_scores
    >>> model = mechinterp.load("zoo:attn-only-2l")
    >>> scores = head_scores(model)  # on generated probe sequences
    >>> scores.top("induction", 2)  # doctest: +SKIP
    ['L1H2', 'L1H0']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mechinterp.attention._inputs import read_patterns
from mechinterp.attention.figures import pyplot
from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError
from mechinterp.viz import escape, figure_to_img_tag, table_html

__all__ = ["HEAD_KINDS", "HeadScores", "detection_patterns", "score_heads", "probe_sequences", "head_scores"]

HEAD_KINDS = ("previous_token", "induction", "duplicate_token", "first_token")
Measure = Literal["row", "tl"]


def detection_patterns(
    tokens: Int[Tensor, "batch pos"],
    mask: Int[Tensor, "batch pos"] | None = None,
    kinds: Sequence[str] = HEAD_KINDS,
) -> dict[str, Bool[Tensor, "batch query_pos key_pos"]]:
    """Where a head of each kind should attend, per prompt (right padding masked out).

    Example:
        >>> import torch
        >>> d = detection_patterns(torch.tensor([[5, 7, 5, 7]]))
        >>> d["induction"][0, 2].tolist(), d["duplicate_token"][0, 3].tolist()
        ([False, True, False, False], [False, True, False, False])
    """
    _check_kinds(kinds)
    b, n = tokens.shape
    mask = torch.ones_like(tokens) if mask is None else mask
    real = mask.bool()
    both = real[:, :, None] & real[:, None, :]  # [batch, query_pos, key_pos]
    q_idx = torch.arange(n)[:, None]
    k_idx = torch.arange(n)[None, :]
    same = tokens[:, :, None] == tokens[:, None, :]  # same[b, q, k]: token[q] == token[k]
    duplicate = same & (k_idx < q_idx) & both
    out: dict[str, Tensor] = {}
    for kind in kinds:
        if kind == "previous_token":
            pattern = (k_idx == q_idx - 1).expand(b, n, n) & both
        elif kind == "duplicate_token":
            pattern = duplicate
        elif kind == "induction":
            shifted = torch.zeros_like(duplicate)
            shifted[:, :, 1:] = duplicate[:, :, :-1]  # D[q, k] = dup[q, k - 1]
            pattern = shifted & (k_idx <= q_idx) & both
        else:  # first_token
            pattern = ((k_idx == 0) & (q_idx >= 1)).expand(b, n, n) & both
        out[kind] = pattern
    return out


def _check_kinds(kinds: Sequence[str]) -> None:
    unknown = [k for k in kinds if k not in HEAD_KINDS]
    if unknown or not kinds:
        raise MechinterpError(f"Unknown head kind(s) {unknown or list(kinds)}; choose from {list(HEAD_KINDS)}.")


def score_heads(
    patterns: Float[Tensor, "batch layer head_index query_pos key_pos"],
    tokens: Int[Tensor, "batch pos"],
    mask: Int[Tensor, "batch pos"] | None = None,
    *,
    kinds: Sequence[str] = HEAD_KINDS,
    measure: Measure = "row",
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
) -> Float[Tensor, "kind layer head_index"]:
    """Scores of every head for every kind, from patterns (see the module docstring).

    A kind that no query row of any prompt can show (no repeated token for induction) scores
    NaN.
    """
    if measure not in ("row", "tl"):
        raise MechinterpError(f"measure must be 'row' or 'tl' (TransformerLens's 'mul'); got {measure!r}.")
    n = tokens.shape[1]
    if patterns.shape[-1] != n or patterns.shape[0] != tokens.shape[0]:
        raise MechinterpError(f"patterns {tuple(patterns.shape)} do not match tokens {tuple(tokens.shape)}.")
    a = patterns.float()
    if exclude_bos or exclude_current_token:
        a = a.clone()
        if exclude_bos:
            a[..., 0] = 0.0
        if exclude_current_token:
            a = a * (1.0 - torch.eye(n, dtype=a.dtype))
    targets = detection_patterns(tokens, mask, kinds)
    out = []
    for kind in kinds:
        d = targets[kind].to(a.dtype)[:, None, None]  # [batch, 1, 1, query_pos, key_pos]
        hit = (a * d).sum(-1)  # [batch, layer, head, query_pos]
        if measure == "tl":
            per_prompt = hit.sum(-1) / a.sum((-1, -2)).clamp_min(1e-12)  # [batch, layer, head]
            out.append(per_prompt.mean(0))
            continue
        rows = d.squeeze(1).squeeze(1).sum(-1) > 0  # [batch, query_pos]
        total = a.sum(-1).clamp_min(1e-12)  # row mass left after exclusions
        ratio = hit / total * rows[:, None, None, :]
        count = rows.sum()
        if count == 0:
            out.append(torch.full(a.shape[1:3], float("nan")))
        else:
            out.append(ratio.sum((0, -1)) / count)
    return torch.stack(out)


def probe_sequences(
    model: Any, n: int = 32, seg_len: int | None = None, seed: int = 0
) -> Int[Tensor, "batch pos"]:
    """``[BOS] + A + A`` with ``A`` ``seg_len`` distinct random non-special tokens.

    Every token of the second copy has exactly one earlier occurrence, so previous-token,
    duplicate-token, induction and first-token behaviour all show. ``seg_len`` defaults to
    the largest of at most 20 that fits ``n_ctx`` and the vocabulary.
    """
    tok = getattr(model, "tokenizer", None)
    special = set(getattr(tok, "all_special_ids", []) or []) if tok is not None else set()
    words = torch.tensor([i for i in range(model.cfg.d_vocab) if i not in special])
    longest = min(20, (model.cfg.n_ctx - 1) // 2, len(words))
    seg_len = longest if seg_len is None else seg_len
    if n < 1 or seg_len < 2 or seg_len > min((model.cfg.n_ctx - 1) // 2, len(words)):
        raise MechinterpError(
            f"probe_sequences needs n >= 1 and 2 <= seg_len <= {min((model.cfg.n_ctx - 1) // 2, len(words))} "
            f"(n_ctx={model.cfg.n_ctx}, {len(words)} usable tokens); got n={n}, seg_len={seg_len}."
        )
    bos = getattr(tok, "bos_token_id", None) if tok is not None else None
    bos = int(words[0]) if bos is None else int(bos)
    gen = torch.Generator().manual_seed(seed)
    seg = torch.stack([words[torch.randperm(len(words), generator=gen)[:seg_len]] for _ in range(n)])
    return torch.cat([torch.full((n, 1), bos), seg, seg], dim=1)


@dataclass(frozen=True, eq=False)
class HeadScores(AbstractResult):
    """Scores per (kind, layer, head).

    Attributes:
        scores: ``[kind, layer, head_index]``.
        kinds: the kinds, in order.
        method: ``"head_detection"``.
        parameters: measure, exclusions, inputs.
    """

    scores: Float[Tensor, "kind layer head_index"]
    kinds: list[str]
    method: str = "head_detection"
    parameters: dict[str, Any] = field(default_factory=dict)

    def get(self, kind: str) -> Float[Tensor, "layer head_index"]:
        """The ``[layer, head]`` scores of one kind."""
        if kind not in self.kinds:
            raise MechinterpError(f"No scores for {kind!r}; this result has {self.kinds}.")
        return self.scores[self.kinds.index(kind)]

    def ranking(self, kind: str) -> list[tuple[str, float]]:
        """All heads as ``("L1H2", score)``, best first (NaN last)."""
        grid = self.get(kind)
        flat = torch.nan_to_num(grid.flatten(), nan=-float("inf"))
        order = flat.argsort(descending=True, stable=True).tolist()
        n_heads = grid.shape[1]
        return [(f"L{i // n_heads}H{i % n_heads}", float(grid.flatten()[i])) for i in order]

    def top(self, kind: str, k: int = 1) -> list[str]:
        """The names of the ``k`` best heads of a kind."""
        return [name for name, _ in self.ranking(kind)[:k]]

    def to_dataframe(self) -> Any:
        """One row per head, one column per kind."""
        import pandas as pd

        n_layers, n_heads = self.scores.shape[1:]
        rows = []
        for layer in range(n_layers):
            for head in range(n_heads):
                row: dict[str, Any] = {"head": f"L{layer}H{head}", "layer": layer, "head_index": head}
                row.update({kind: float(self.scores[i, layer, head]) for i, kind in enumerate(self.kinds)})
                rows.append(row)
        return pd.DataFrame(rows)

    def plot(self, ax: Any = None) -> Any:
        """One ``[layer × head]`` heatmap per kind, values written in the cells."""
        plt = pyplot()
        k, n_layers, n_heads = self.scores.shape
        if ax is None:
            fig, axes = plt.subplots(1, k, figsize=(max(2.2, 0.55 * n_heads + 1.2) * k, 0.5 * n_layers + 1.6), squeeze=False)
            axes = axes[0]
        else:
            fig, axes = ax.figure, [ax] * k if k == 1 else list(ax)
        for i, kind in enumerate(self.kinds):
            data = self.scores[i].float().numpy()
            image = axes[i].imshow(data, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
            axes[i].set_title(kind.replace("_", " "), fontsize=9)
            axes[i].set_xticks(range(n_heads))
            axes[i].set_yticks(range(n_layers))
            axes[i].set_xlabel("head")
            if i == 0:
                axes[i].set_ylabel("layer")
            if n_layers * n_heads <= 64:
                for layer in range(n_layers):
                    for head in range(n_heads):
                        v = data[layer, head]
                        axes[i].text(head, layer, "nan" if v != v else f"{v:.2f}", ha="center", va="center",
                                     fontsize=6, color="white" if v < 0.6 else "black")
        fig.colorbar(image, ax=list(axes), fraction=0.02, pad=0.02)
        return fig

    def to_html(self) -> str:
        """Top heads per kind, the heatmaps, and the full table."""
        top = [{"kind": kind, "top heads": ", ".join(f"{h} ({s:.2f})" for h, s in self.ranking(kind)[:3])} for kind in self.kinds]
        params = ", ".join(f"{k}={v}" for k, v in self.parameters.items())
        return (
            f"<section><h3>Head detection</h3><p class='muted'>{escape(params)}</p>{table_html(top)}"
            f"{figure_to_img_tag(self.plot())}{table_html(self.to_dataframe().to_dict('records'))}</section>"
        )


def head_scores(
    model: Any,
    prompts: Any = None,
    *,
    kinds: Sequence[str] = HEAD_KINDS,
    measure: Measure = "row",
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
    n_probes: int = 32,
    seg_len: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> HeadScores:
    """Score every head of ``model`` for each kind, on ``prompts`` or on probe sequences.

    Args:
        model: a ``HookedTransformer``.
        prompts: text prompt(s), token ids, a ``Tokenized`` batch or a ``SharedCache``
            (``positions="all"``); ``None`` generates :func:`probe_sequences`.
        kinds: which of :data:`HEAD_KINDS` to score.
        measure: ``"row"`` (default, 1 = perfect head) or ``"tl"`` (TransformerLens's
            ``detect_head`` with ``error_measure="mul"``).
        exclude_bos, exclude_current_token: as in TransformerLens.
        n_probes, seg_len, seed: the generated probes when ``prompts`` is ``None``.
        batch_size: prompts per forward pass.

    Example:
        >>> scores = head_scores(model, ["t1 t2 t3 t1 t2 t3"], kinds=["induction"])  # doctest: +SKIP
        >>> scores.to_dataframe()  # doctest: +SKIP
    """
    _check_kinds(kinds)
    source = "inputs"
    if prompts is None:
        prompts = probe_sequences(model, n=n_probes, seg_len=seg_len, seed=seed)
        source = f"{n_probes} probe sequences [BOS]+A+A, len(A)={(prompts.shape[1] - 1) // 2}, seed={seed}"
    batch = read_patterns(model, prompts, batch_size=batch_size)
    scores = score_heads(
        batch.patterns, batch.tokens, batch.mask, kinds=kinds, measure=measure,
        exclude_bos=exclude_bos, exclude_current_token=exclude_current_token,
    )
    return HeadScores(
        scores=scores,
        kinds=list(kinds),
        parameters={
            "measure": measure,
            "exclude_bos": exclude_bos,
            "exclude_current_token": exclude_current_token,
            "source": source,
            "n_prompts": len(batch.lengths),
        },
    )
