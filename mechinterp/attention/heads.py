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
diagonal first and renormalise (as in TransformerLens). ``sink=`` generalises
``exclude_bos`` to any attention-sink positions (``"first"``, an ``int``, a list):
their key columns are zeroed and each head is scored on the attention it pays elsewhere.
On a pretrained model much of the attention goes to the first token (SmolLM2-135M: queries
past it pay it 74 % of their attention on "The capital of France is", 51 % on repeated random
tokens, averaged over all 270 heads), so the ``"row"`` score of a head is capped by what the
sink leaves; with ``sink="first"`` it is the share of the rest (SmolLM2's best induction head
L18H6: 0.88 → 0.93).
``first_token`` is undefined (NaN) when position 0 is excluded. The result always records
:attr:`HeadScores.first_token_mass`, the mean attention paid to position 0.

Patterns are read through the shared cache in batches and scored for all heads at once;
:func:`probe_sequences` makes ``[BOS] + A + A`` inputs (``A + A`` for a model that prepends
no BOS, such as SmolLM2) on which all four kinds are defined.

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

from mechinterp.attention.inputs import read_patterns
from mechinterp.core.validation import check_count
from mechinterp.core.precision import runs_synced
from mechinterp.viz import pyplot
from mechinterp.attention.sinks import Sink, resolve_sinks
from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError
from mechinterp.viz import escape, figure_to_img_tag, pyplot, table_html

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
    sink_positions: Sequence[int] = (),
) -> Float[Tensor, "kind layer head_index"]:
    """Scores of every head for every kind, from patterns (see the module docstring).

    A kind that no query row of any prompt can show (no repeated token for induction) scores
    NaN, and so does ``first_token`` when position 0 is excluded (``exclude_bos`` or a sink
    at 0). ``sink_positions``: key columns zeroed before scoring (``exclude_bos`` adds 0).
    """
    if measure not in ("row", "tl"):
        raise MechinterpError(f"measure must be 'row' or 'tl' (TransformerLens's 'mul'); got {measure!r}.")
    n = tokens.shape[1]
    if patterns.shape[-1] != n or patterns.shape[0] != tokens.shape[0]:
        raise MechinterpError(f"patterns {tuple(patterns.shape)} do not match tokens {tuple(tokens.shape)}.")
    a = patterns.float()
    excluded = sorted(set(sink_positions) | ({0} if exclude_bos else set()))
    if excluded or exclude_current_token:
        a = a.clone()
        if excluded:
            a[..., excluded] = 0.0
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
        if count == 0 or (kind == "first_token" and 0 in excluded):
            out.append(torch.full(a.shape[1:3], float("nan")))
        else:
            out.append(ratio.sum((0, -1)) / count)
    return torch.stack(out)


def probe_sequences(
    model: Any, n: int = 32, seg_len: int | None = None, seed: int = 0, bos: bool | None = None
) -> Int[Tensor, "batch pos"]:
    """``[BOS] + A + A`` with ``A`` ``seg_len`` distinct random non-special tokens.

    Every token of the second copy has exactly one earlier occurrence, so previous-token,
    duplicate-token, induction and first-token behaviour all show. ``seg_len`` defaults to
    the largest of at most 20 that fits ``n_ctx`` and the vocabulary. ``bos`` (default: the
    model's ``cfg.default_prepend_bos``, i.e. what its tokenizer does) decides whether the BOS
    token comes first; without it the sequence is ``A + A`` and its first token is the sink.
    """
    check_count(n, "n")
    check_count(seg_len, "seg_len", none_ok=True, minimum=2)
    tok = getattr(model, "tokenizer", None)
    special = set(getattr(tok, "all_special_ids", []) or []) if tok is not None else set()
    words = torch.tensor([i for i in range(model.cfg.d_vocab) if i not in special])
    with_bos = bool(getattr(model.cfg, "default_prepend_bos", True)) if bos is None else bool(bos)
    most = min((model.cfg.n_ctx - int(with_bos)) // 2, len(words))
    seg_len = min(20, most) if seg_len is None else seg_len
    if n < 1 or seg_len < 2 or seg_len > most:
        raise MechinterpError(
            f"probe_sequences needs n >= 1 and 2 <= seg_len <= {most} "
            f"(n_ctx={model.cfg.n_ctx}, {len(words)} usable tokens); got n={n}, seg_len={seg_len}."
        )
    gen = torch.Generator().manual_seed(seed)
    seg = torch.stack([words[torch.randperm(len(words), generator=gen)[:seg_len]] for _ in range(n)])
    if not with_bos:
        return torch.cat([seg, seg], dim=1)
    bos_id = getattr(tok, "bos_token_id", None) if tok is not None else None
    bos_id = int(words[0]) if bos_id is None else int(bos_id)
    return torch.cat([torch.full((n, 1), bos_id), seg, seg], dim=1)


SINK_HINT = 0.3  # first_token_mass above which the rendering suggests sink='first' (uniform attention over 32 tokens: 0.10)
ANNOTATE_ALL = 64  # annotate every cell of a heatmap up to this many heads; above, the top ones only
FULL_TABLE = 64  # the full per-head table is shown open up to this many heads, folded above


@dataclass(frozen=True, eq=False)
class HeadScores(AbstractResult):
    """Scores per (kind, layer, head).

    Attributes:
        scores: ``[kind, layer, head_index]``.
        kinds: the kinds, in order.
        method: ``"head_detection"``.
        parameters: measure, exclusions, inputs.
        sink_positions: key positions excluded as attention sinks (``exclude_bos`` counts as
            ``[0]``); ``[]`` for none.
        first_token_mass: mean attention that real queries past position 0 pay to position 0,
            over every head and prompt, *before* any exclusion (a sink check: SmolLM2-135M
            0.51 on repeated random tokens, 0.74 on "The capital of France is").
        dtype: the dtype the model computed the patterns in (scores are float32).
    """

    scores: Float[Tensor, "kind layer head_index"]
    kinds: list[str]
    method: str = "head_detection"
    parameters: dict[str, Any] = field(default_factory=dict)
    sink_positions: list[int] = field(default_factory=list)
    first_token_mass: float | None = None
    dtype: str = "float32"

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

    def top_table(self, k: int = 10) -> list[dict[str, Any]]:
        """The ``k`` best heads of every kind side by side: one row per rank, ``"L18H6 0.88"`` cells.

        Example:
            >>> scores.top_table(3)[0]  # doctest: +SKIP
            {'rank': 1, 'previous_token': 'L16H0 0.89', 'induction': 'L18H6 0.88', ...}
        """
        rankings = {kind: self.ranking(kind)[:k] for kind in self.kinds}
        return [
            {"rank": r + 1, **{kind: f"{rankings[kind][r][0]} {rankings[kind][r][1]:.2f}" for kind in self.kinds}}
            for r in range(min(k, self.scores.shape[1] * self.scores.shape[2]))
        ]

    def sink_note(self) -> str:
        """One sentence on the attention sink: what was excluded, or a hint to exclude it."""
        mass = self.first_token_mass
        if self.sink_positions:
            held = "" if mass is None else f" (position 0 took {mass:.0%} of all attention)"
            return f"Attention to sink position(s) {self.sink_positions} excluded; scores are shares of the rest{held}."
        if mass is not None and mass >= SINK_HINT:
            return (
                f"Position 0 takes {mass:.0%} of all attention (an attention sink); scores count it, so they are "
                "capped by what the sink leaves. Pass sink='first' to score the attention paid elsewhere."
            )
        return ""

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

    def plot(self, ax: Any = None, annotate_top: int = 5) -> Any:
        """One ``[layer × head]`` heatmap per kind.

        Up to 64 heads every cell carries its value; above (a 30-layer × 9-head model, say)
        only the ``annotate_top`` best heads of each kind do, outlined, so the figure stays
        readable. Figure height grows with the layers (0.3 inch each above 16), width with the
        heads; every layer is labelled.
        """
        plt = pyplot()
        k, n_layers, n_heads = self.scores.shape
        if ax is None:
            per_layer = 0.5 if n_layers <= 16 else 0.3
            per_head = 0.55 if n_layers <= 16 and n_heads <= 12 else 0.45
            width = max(2.2, per_head * n_heads + 1.2) * k
            note = self.sink_note()
            fig, axes = plt.subplots(1, k, figsize=(width, per_layer * n_layers + 1.6 + (0.5 if note else 0.0)),
                                     squeeze=False, layout="constrained")  # room for the note above the titles
            axes = axes[0]
        else:
            fig, axes = ax.figure, [ax] * k if k == 1 else list(ax)
        small = n_layers * n_heads <= ANNOTATE_ALL
        for i, kind in enumerate(self.kinds):
            data = self.scores[i].float().numpy()
            image = axes[i].imshow(data, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
            axes[i].set_title(kind.replace("_", " "), fontsize=9)
            axes[i].set_xticks(range(n_heads), labels=[str(h) for h in range(n_heads)], fontsize=7 if small else 6)
            axes[i].set_yticks(range(n_layers), labels=[str(layer) for layer in range(n_layers)], fontsize=7 if small else 6)
            axes[i].set_xlabel("head")
            if i == 0:
                axes[i].set_ylabel("layer")
            if small:
                cells = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
            else:
                cells = [_parse_head(name) for name, v in self.ranking(kind)[:annotate_top] if v == v]
            for layer, head in cells:
                v = data[layer, head]
                axes[i].text(head, layer, "nan" if v != v else f"{v:.2f}", ha="center", va="center",
                             fontsize=6 if small else 5.5, color="white" if v < 0.6 else "black")
                if not small:
                    axes[i].add_patch(plt.Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="crimson", linewidth=1.0))
        fig.colorbar(image, ax=list(axes), fraction=0.02, pad=0.02, label="score")
        note = self.sink_note()
        if note and ax is None:
            import textwrap

            fig.suptitle(textwrap.fill(note, max(30, int(fig.get_size_inches()[0] * 15))), fontsize=8)
        return fig

    def to_html(self) -> str:
        """Top heads per kind (a top-10 table for large models), the heatmaps, and the full table
        (folded away above 64 heads)."""
        n_total = self.scores.shape[1] * self.scores.shape[2]
        params = ", ".join(f"{k}={v}" for k, v in self.parameters.items())
        note = self.sink_note()
        parts = [f"<section><h3>Head detection</h3><p class='muted'>{escape(params)}</p>"]
        if note:
            parts.append(f"<p class='note'>{escape(note)}</p>")
        if n_total <= FULL_TABLE:
            top = [{"kind": kind, "top heads": ", ".join(f"{h} ({s:.2f})" for h, s in self.ranking(kind)[:3])} for kind in self.kinds]
            parts.append(table_html(top))
        else:
            parts.append(f"<h4>Top 10 heads of {n_total}, per kind</h4>" + table_html(self.top_table(10)))
        parts.append(figure_to_img_tag(self.plot()))
        full = table_html(self.to_dataframe().to_dict("records"))
        if n_total > FULL_TABLE:
            full = f"<details><summary>All {n_total} heads</summary>{full}</details>"
        parts.append(full + "</section>")
        return "".join(parts)


def _parse_head(name: str) -> tuple[int, int]:
    layer, head = name[1:].split("H")
    return int(layer), int(head)


@runs_synced
def head_scores(
    model: Any,
    prompts: Any = None,
    *,
    kinds: Sequence[str] = HEAD_KINDS,
    measure: Measure = "row",
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
    sink: Sink = None,
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
        exclude_bos, exclude_current_token: as in TransformerLens (``exclude_bos`` is
            ``sink="first"``).
        sink: attention-sink positions to leave out: ``None`` (default), ``"first"``, an
            ``int`` or a list of positions. Recommended on pretrained models, where the first
            token takes most of the attention: the scores become shares of the rest.
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
        with_bos = bool(getattr(model.cfg, "default_prepend_bos", True))
        seg = (prompts.shape[1] - int(with_bos)) // 2
        source = f"{n_probes} probe sequences {'[BOS]+' if with_bos else ''}A+A, len(A)={seg}, seed={seed}"
    batch = read_patterns(model, prompts, batch_size=batch_size)
    sinks = sorted(set(resolve_sinks(sink, batch.lengths)) | ({0} if exclude_bos else set()))
    scores = score_heads(
        batch.patterns, batch.tokens, batch.mask, kinds=kinds, measure=measure,
        exclude_current_token=exclude_current_token, sink_positions=sinks,
    )
    return HeadScores(
        scores=scores,
        kinds=list(kinds),
        parameters={
            "measure": measure,
            "exclude_bos": exclude_bos,
            "exclude_current_token": exclude_current_token,
            "sink": sink if sink is None or isinstance(sink, str) else sinks,
            "source": source,
            "n_prompts": len(batch.lengths),
        },
        sink_positions=sinks,
        first_token_mass=_first_token_mass(batch.patterns, batch.mask),
        dtype=batch.dtype,
    )


def _first_token_mass(patterns: Float[Tensor, "batch layer head_index query_pos key_pos"], mask: Int[Tensor, "batch pos"]) -> float | None:
    """Mean attention of real queries ``q >= 1`` to position 0, over heads, layers and prompts."""
    rows = mask.bool().clone()
    rows[:, 0] = False
    if not rows.any():
        return None
    to_first = patterns[..., 0]  # [batch, layer, head, query_pos]
    picked = to_first.permute(0, 3, 1, 2)[rows]  # [n_rows, layer, head]
    return float(picked.mean())
