"""Grouping and aggregation of token attributions.

* :func:`word_groups` / :func:`merge_words` — sub-word tokens merged into words (a new word
  starts at a token with a leading space marker, or at punctuation).
* :func:`feature_groups` — the features perturbation methods switch on and off: tokens,
  words, named spans (``{"context": (1, 40), "question": (40, 52)}``) or explicit lists.
* :func:`group_scores` — sum (or mean / max) token scores within groups, e.g. how much of
  the answer rests on the retrieved document vs the question.
* :func:`aggregate` — combine methods: mean / max / product of per-method normalised
  scores; :func:`rank` — ranks per token.
* :func:`diagnose` — warns when most attribution mass falls on BOS, punctuation or
  stop-words (a frequent sign that the method explains a positional artefact).
"""

from __future__ import annotations

import string
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.attribution.result import TokenAttribution
from mechinterp.errors import EmptyInputError, MechinterpError, ShapeMismatchError

__all__ = [
    "AttributionWarning",
    "STOP_WORDS",
    "aggregate",
    "diagnose",
    "feature_groups",
    "group_scores",
    "merge_words",
    "normalise_scores",
    "rank",
    "word_groups",
]

STOP_WORDS = frozenset(
    "a an the of to in on at by for with from and or but is are was were be been being it its this that these those "
    "as if then than so not no do does did have has had i you he she we they me him her us them my your his our their "
    "what which who whom there here when where why how all any each".split()
)
_SPACE_MARKS = (" ", "Ġ", "▁", "\n", "\t", "Ċ")


class AttributionWarning(UserWarning):
    """Attribution mass concentrated on tokens that rarely carry meaning."""


def _is_punct(tok: str) -> bool:
    core = tok.strip().lstrip("Ġ▁")
    return bool(core) and all(c in string.punctuation for c in core)


def word_groups(tokens: Sequence[str], skip_first: bool = False) -> list[list[int]]:
    """Positions grouped into words.

    With a tokenizer that marks word starts by a leading space (GPT-2, SentencePiece), a
    token without it continues the previous word; with a word-level tokenizer (no token
    carries a space) every token is a word. Punctuation is a word of its own.

    Args:
        tokens: token strings.
        skip_first: leave position 0 (BOS) out of every group.

    Example:
        >>> word_groups(["<bos>", "The", " capital", " Par", "is", "."], skip_first=True)
        [[1], [2], [3, 4], [5]]
    """
    start = 1 if skip_first else 0
    spaced = any(t.startswith(_SPACE_MARKS) for t in tokens[start + 1 :])
    groups: list[list[int]] = []
    for i in range(start, len(tokens)):
        tok = tokens[i]
        new = (not spaced or not groups or tok.startswith(_SPACE_MARKS) or _is_punct(tok)
               or _is_punct(tokens[groups[-1][-1]]))
        if new:
            groups.append([i])
        else:
            groups[-1].append(i)
    return groups


def feature_groups(tokens: Sequence[str], features: Any = "token", has_bos: bool = False
                   ) -> tuple[list[list[int]], list[str]]:
    """Feature groups (lists of positions) and their labels.

    Args:
        tokens: the prompt's token strings.
        features: ``"token"`` (each non-BOS token), ``"word"``, a mapping ``name -> (start,
            end)`` or ``name -> [positions]``, or a list of position lists.
        has_bos: position 0 is BOS and is kept out of the features (it is never masked).

    Raises:
        MechinterpError: overlapping, empty or out-of-range groups.
    """
    n = len(tokens)
    if isinstance(features, str):
        if features == "token":
            groups = [[i] for i in range(1 if has_bos else 0, n)]
        elif features == "word":
            groups = word_groups(tokens, skip_first=has_bos)
        else:
            raise MechinterpError(f"Unknown features {features!r}; use 'token', 'word', a dict of spans or a list of position lists.")
        labels = ["".join(tokens[i] for i in g) for g in groups]
    elif isinstance(features, Mapping):
        labels, groups = [], []
        for name, span in features.items():
            if isinstance(span, tuple) and len(span) == 2 and all(isinstance(v, int) for v in span):
                positions = list(range(span[0], span[1]))
            else:
                positions = [int(p) for p in span]
            labels.append(str(name))
            groups.append(positions)
    elif isinstance(features, Sequence):
        groups = [[int(p) for p in g] for g in features]
        labels = ["".join(tokens[i] for i in g if 0 <= i < n) for g in groups]
    else:
        raise MechinterpError(f"Cannot use {features!r} as features.")
    if not groups:
        raise EmptyInputError("There are no features to attribute to (the prompt has only BOS?). Add tokens.")
    seen: set[int] = set()
    for label, g in zip(labels, groups):
        if not g:
            raise EmptyInputError(f"Feature group {label!r} is empty.")
        bad = [p for p in g if not 0 <= p < n]
        if bad:
            raise MechinterpError(f"Feature group {label!r} has positions {bad} outside the prompt (0..{n - 1}).")
        if seen & set(g):
            raise MechinterpError(f"Feature groups overlap at positions {sorted(seen & set(g))}; each position may be in one group.")
        seen |= set(g)
    return groups, labels


def group_scores(result: TokenAttribution, groups: Sequence[Sequence[int]] | Mapping[str, Any] | str,
                 labels: Sequence[str] | None = None, how: str = "sum") -> TokenAttribution:
    """Combine token scores within groups (``how``: ``"sum"``, ``"mean"``, ``"max"`` of |score|·sign).

    ``groups`` may be ``"word"``, a dict of named spans, or a list of position lists.

    Example:
        >>> spans = group_scores(res, {"context": (1, 30), "question": (30, 38)})  # doctest: +SKIP
    """
    if isinstance(groups, (str, Mapping)):
        groups, labels_found = feature_groups(result.tokens, groups, has_bos=False)
        labels = labels if labels is not None else labels_found
    else:
        groups = [list(g) for g in groups]
        labels = labels if labels is not None else ["".join(result.tokens[i] for i in g) for g in groups]
    cols = []
    for g in groups:
        block = result.scores[:, list(g)]
        if how == "sum":
            cols.append(block.sum(-1))
        elif how == "mean":
            cols.append(block.mean(-1))
        elif how == "max":
            idx = block.abs().argmax(-1, keepdim=True)
            cols.append(block.gather(-1, idx).squeeze(-1))
        else:
            raise MechinterpError(f"Unknown group reduction {how!r}; use 'sum', 'mean' or 'max'.")
    meta = {**result.metadata, "groups": [list(g) for g in groups], "group_reduction": how}
    return TokenAttribution(list(labels), torch.stack(cols, -1), result.targets, result.method, result.options, meta)


def merge_words(result: TokenAttribution, how: str = "sum") -> TokenAttribution:
    """Merge sub-word tokens into words (see :func:`word_groups`)."""
    return group_scores(result, word_groups(result.tokens), how=how)


def normalise_scores(scores: Float[Tensor, "n_targets n_tokens"], how: str = "abs_sum") -> Float[Tensor, "n_targets n_tokens"]:
    """Scale each row: ``"abs_sum"`` (Σ|s| = 1), ``"max"`` (max |s| = 1), ``"rank"`` (0..1 by rank)."""
    scores = scores.float()
    if how == "abs_sum":
        return scores / scores.abs().sum(-1, keepdim=True).clamp_min(1e-12)
    if how == "max":
        return scores / scores.abs().amax(-1, keepdim=True).clamp_min(1e-12)
    if how == "rank":
        ranks = torch.argsort(torch.argsort(scores, -1, stable=True), -1).float()
        return ranks / max(scores.shape[-1] - 1, 1)
    raise MechinterpError(f"Unknown normalisation {how!r}; use 'abs_sum', 'max' or 'rank'.")


def aggregate(results: Sequence[TokenAttribution], how: str = "mean", normalise: str = "abs_sum") -> TokenAttribution:
    """Combine several methods' attributions of the same prompt and targets.

    Each result's rows are normalised first (:func:`normalise_scores`), then combined per
    token by ``how``: ``"mean"``, ``"max"`` (largest magnitude, sign kept) or
    ``"product"`` (of absolute normalised scores: high only where all methods agree).

    Raises:
        ShapeMismatchError: results over different tokens or targets.
    """
    results = list(results)
    if not results:
        raise EmptyInputError("aggregate() needs at least one result.")
    first = results[0]
    for r in results[1:]:
        if r.tokens != first.tokens or r.scores.shape != first.scores.shape:
            raise ShapeMismatchError(f"Cannot aggregate {r.method} ({len(r.tokens)} tokens, {r.n_targets} targets) with "
                                     f"{first.method} ({len(first.tokens)} tokens, {first.n_targets} targets).")
    stack = torch.stack([normalise_scores(r.scores, normalise) for r in results])  # [n_methods, n_targets, n_tokens]
    if how == "mean":
        combined = stack.mean(0)
    elif how == "max":
        idx = stack.abs().argmax(0, keepdim=True)
        combined = stack.gather(0, idx).squeeze(0)
    elif how == "product":
        combined = stack.abs().prod(0)
    else:
        raise MechinterpError(f"Unknown aggregation {how!r}; use 'mean', 'max' or 'product'.")
    methods = [r.method for r in results]
    return TokenAttribution(first.tokens, combined, first.targets, f"{how}({', '.join(methods)})",
                            {"how": how, "normalise": normalise, "methods": methods}, {})


def rank(result: TokenAttribution, target: int = 0, by: str = "value") -> list[int]:
    """Rank of each token (1 = highest score; ``by="abs"`` ranks by magnitude)."""
    row = result.scores[target]
    order = torch.argsort(row.abs() if by == "abs" else row, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(1, len(order) + 1)
    return ranks.tolist()


def diagnose(result: TokenAttribution, threshold: float = 0.5, warn: bool = True) -> dict[str, float]:
    """Share of absolute attribution mass on BOS, punctuation and stop-words.

    Returns:
        ``{"bos": f, "punctuation": f, "stop_words": f, "total": f}`` (fractions, over all targets).
        Warns :class:`AttributionWarning` when ``total > threshold``.
    """
    mass = result.scores.abs().sum(0)
    whole = float(mass.sum())
    if whole <= 0:
        return {"bos": 0.0, "punctuation": 0.0, "stop_words": 0.0, "total": 0.0}
    kinds = {"bos": [], "punctuation": [], "stop_words": []}
    for i, tok in enumerate(result.tokens):
        core = tok.strip().lstrip("Ġ▁").lower()
        if i == 0 and (tok.startswith("<") or tok in ("<|endoftext|>", "[CLS]", "<s>")):
            kinds["bos"].append(i)
        elif _is_punct(tok):
            kinds["punctuation"].append(i)
        elif core in STOP_WORDS:
            kinds["stop_words"].append(i)
    out = {k: float(mass[v].sum()) / whole if v else 0.0 for k, v in kinds.items()}
    out["total"] = sum(out.values())
    if warn and out["total"] > threshold:
        warnings.warn(
            f"{out['total']:.0%} of the {result.method} attribution mass is on BOS ({out['bos']:.0%}), punctuation "
            f"({out['punctuation']:.0%}) or stop-words ({out['stop_words']:.0%}). The method may be explaining a "
            "positional artefact: compare with another method or baseline, or group tokens into words/spans.",
            AttributionWarning,
            stacklevel=3,
        )
    return out
