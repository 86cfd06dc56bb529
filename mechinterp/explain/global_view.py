"""Global views: per-prompt attributions aggregated over a dataset, by token, position or your groups.

:func:`aggregate` folds :class:`~mechinterp.attribution.TokenAttribution` results (one per
prompt) into per-group statistics with confidence intervals; :func:`global_attribution`
computes the attributions prompt by prompt (through :func:`mechinterp.attribution.attribute`)
and folds them as it goes, so memory stays at one prompt's attribution plus a few numbers
per group whatever the number of prompts.

Each prompt's scores are first made comparable (``normalise="share"``: divided by the
prompt's total absolute attribution, BOS left out; ``"none"``: as computed). Per group the
running count, mean and variance are kept (Welford); the interval is the Student-t interval
of the mean at ``confidence`` (``mean ± t_{n-1} · sd / sqrt(n)``).

Groups (``group_by``): ``"token"`` (the token string, stripped), ``"position"``,
``"position_from_end"`` (-1 is the last token), ``"ground_truth"`` for a task (its
ground-truth positions vs the other tokens), or a function ``(prompt_index, position,
token) -> label`` (``None`` skips the token).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mechinterp.core.precision import runs_synced
from mechinterp.core.results import AbstractResult
from mechinterp.errors import EmptyInputError, MechinterpError
from mechinterp.viz import escape, table_html
from mechinterp.core.validation import check_positive, check_token_ids

__all__ = ["GlobalView", "aggregate", "global_attribution"]

GROUPINGS = ("token", "position", "position_from_end", "ground_truth")


@dataclass(frozen=True)
class GlobalView(AbstractResult):
    """Per-group statistics of attribution scores over a dataset, sorted by mean (largest first).

    Attributes:
        groups: the group labels.
        mean / std / low / high: per group, the mean score, its standard deviation, and the
            confidence interval of the mean (``low``/``high``; NaN with one sample).
        count: tokens per group.
        n_prompts: prompts aggregated.
        method: the attribution method; ``group_by``, ``normalise``, ``confidence``: how.
    """

    groups: list[str]
    mean: list[float]
    std: list[float]
    low: list[float]
    high: list[float]
    count: list[int]
    n_prompts: int
    method: str
    group_by: str
    normalise: str
    confidence: float
    options: dict[str, Any] = field(default_factory=dict)

    def top(self, k: int = 10, min_count: int = 1) -> list[tuple[str, float, float, float, int]]:
        """The ``k`` groups of largest mean with at least ``min_count`` tokens: ``(group, mean, low, high, count)``."""
        rows = [(g, m, lo, hi, c) for g, m, lo, hi, c in zip(self.groups, self.mean, self.low, self.high, self.count) if c >= min_count]
        return rows[:k]

    def get(self, group: str) -> dict[str, float]:
        """The statistics of one group."""
        if group not in self.groups:
            raise MechinterpError(f"No group {group!r}; groups are {self.groups[:20]}{' ...' if len(self.groups) > 20 else ''}.")
        i = self.groups.index(group)
        return {"mean": self.mean[i], "std": self.std[i], "low": self.low[i], "high": self.high[i], "count": self.count[i]}

    def plot(self, ax: Any = None, k: int = 20, min_count: int = 1) -> Any:
        """The ``k`` groups of largest mean with their confidence intervals."""
        from mechinterp.viz import pyplot

        plt = pyplot()
        rows = self.top(k, min_count)
        if ax is None:
            fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.5))
        else:
            fig = ax.figure
        means = [r[1] for r in rows]
        err = [[max(0.0, r[1] - r[2]) if math.isfinite(r[2]) else 0 for r in rows],
               [max(0.0, r[3] - r[1]) if math.isfinite(r[3]) else 0 for r in rows]]
        ax.barh(range(len(rows)), means, xerr=err, color="#dc322f", alpha=0.8, capsize=2)
        ax.set_yticks(range(len(rows)), labels=[f"{r[0]} (n={r[4]})" for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("mean share of the prompt's |attribution|" if self.normalise == "share" else "mean attribution")
        ax.set_title(f"{self.method} by {self.group_by} over {self.n_prompts} prompts ({100 * self.confidence:.0f}% CI)")
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        """The groups table (offline)."""
        rows = [{"group": g, "mean": m, "low": lo, "high": hi, "count": c} for g, m, lo, hi, c in self.top(50)]
        return (f"<section><h3>global view: {escape(self.method)} by {escape(self.group_by)}</h3>"
                f"<p class='muted'>{self.n_prompts} prompts, normalise={escape(self.normalise)}, "
                f"{100 * self.confidence:.0f}% t-intervals</p>{table_html(rows)}</section>")


class _Running:
    """Welford's running mean and variance."""

    __slots__ = ("n", "mean", "m2")

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x: float) -> None:
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)


def _grouper(group_by: str | Callable[[int, int, str], Any], truth: list[list[int]] | None) -> Callable[[int, int, str, int], Any]:
    if callable(group_by):
        return lambda i, pos, tok, n: group_by(i, pos, tok)
    if group_by == "token":
        return lambda i, pos, tok, n: tok.strip() or repr(tok)
    if group_by == "position":
        return lambda i, pos, tok, n: str(pos)
    if group_by == "position_from_end":
        return lambda i, pos, tok, n: str(pos - n)
    if group_by == "ground_truth":
        if truth is None:
            raise MechinterpError("group_by='ground_truth' needs a Task (its ground_truth.positions).")
        return lambda i, pos, tok, n: "ground truth" if pos in truth[i] else "other"
    raise MechinterpError(f"group_by must be one of {GROUPINGS} or a function (prompt_index, position, token) -> label; "
                          f"got {group_by!r}.")


def aggregate(results: Iterable[Any], group_by: str | Callable[[int, int, str], Any] = "token", *,
              normalise: str = "share", confidence: float = 0.95, skip_bos: bool = True, target: int = 0,
              ground_truth: list[list[int]] | None = None) -> GlobalView:
    """Fold per-prompt attributions into per-group means with confidence intervals.

    Args:
        results: :class:`~mechinterp.attribution.TokenAttribution` results, one per prompt
            (any iterable: a generator keeps memory bounded).
        group_by: see the module docstring.
        normalise: ``"share"`` (scores over the prompt's total absolute attribution) or ``"none"``.
        confidence: the confidence level of the intervals.
        skip_bos: leave position 0 out when its token is the tokenizer's BOS string
            (``<bos>``, ``<|endoftext|>``, ...: any token starting with ``<`` and ending with ``>``).
        target: which target row of each result.
        ground_truth: per prompt, the ground-truth positions (for ``group_by="ground_truth"``).

    Returns:
        A :class:`GlobalView`.

    Example:
        >>> view = aggregate(attributions, "token")  # doctest: +SKIP
        >>> view.top(5, min_count=10)  # doctest: +SKIP
    """
    if normalise not in ("share", "none"):
        raise MechinterpError(f"normalise must be 'share' or 'none', got {normalise!r}.")
    if not 0 < confidence < 1:
        raise MechinterpError(f"confidence must be between 0 and 1, got {confidence!r}.")
    group = _grouper(group_by, ground_truth)
    stats: dict[str, _Running] = {}
    n_prompts, method = 0, ""
    for i, res in enumerate(results):
        if not hasattr(res, "scores") or not hasattr(res, "tokens"):
            raise MechinterpError(f"aggregate takes TokenAttribution results; item {i} is a {type(res).__name__}.")
        method = res.method
        row = torch.as_tensor(res.scores)[target].float()
        start = 1 if skip_bos and res.tokens and res.tokens[0].startswith("<") and res.tokens[0].endswith(">") else 0
        if normalise == "share":
            total = float(row[start:].abs().sum())
            row = row / total if total > 0 else row * 0
        n = len(res.tokens)
        for pos in range(start, n):
            label = group(i, pos, res.tokens[pos], n)
            if label is None:
                continue
            stats.setdefault(str(label), _Running()).add(float(row[pos]))
        n_prompts += 1
    if not n_prompts:
        raise EmptyInputError("aggregate: no results to aggregate.")
    from scipy import stats as st

    rows = []
    for label, r in stats.items():
        sd = math.sqrt(r.m2 / (r.n - 1)) if r.n > 1 else float("nan")
        half = float(st.t.ppf(0.5 + confidence / 2, r.n - 1)) * sd / math.sqrt(r.n) if r.n > 1 else float("nan")
        rows.append((label, r.mean, sd, r.mean - half, r.mean + half, r.n))
    rows.sort(key=lambda x: -x[1])
    name = group_by if isinstance(group_by, str) else getattr(group_by, "__name__", "function")
    return GlobalView([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
                      [r[4] for r in rows], [r[5] for r in rows], n_prompts, method, name, normalise, confidence)


@runs_synced
def global_attribution(model: Any, prompts: Any, targets: Iterable[Any] | None = None, *, method: str = "gradient_x_input",
                       group_by: str | Callable[[int, int, str], Any] = "token", normalise: str = "share",
                       confidence: float = 0.95, **method_options: Any) -> GlobalView:
    """Attribute every prompt of a dataset and aggregate by group, one prompt in memory at a time.

    Args:
        model: a ``HookedTransformer``.
        prompts: a :class:`~mechinterp.tasks.Task` (its clean prompts; targets default to the
            logit difference correct − wrong) or a list of prompts.
        targets: one target per prompt (as :func:`~mechinterp.attribution.attribute` takes
            them); required for a list of prompts.
        method: the attribution method (``"gradient_x_input"``: one backward pass a prompt).
        group_by, normalise, confidence: see :func:`aggregate`.
        **method_options: options of the method.

    Returns:
        A :class:`GlobalView`.

    Example:
        >>> import mechinterp
        >>> from mechinterp.explain import global_attribution
        >>> model = mechinterp.load("zoo:toy-lm")
        >>> task = mechinterp.tasks.load("sentiment", model, n=32)
        >>> view = global_attribution(model, task, method="integrated_gradients", baseline="pad", n_steps=16)  # doctest: +SKIP
        >>> view.top(3, min_count=3)  # doctest: +SKIP
    """
    from mechinterp.attribution import Contrast, attribute

    if not (check_positive(confidence, "confidence") < 1):
        raise MechinterpError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}.")
    if isinstance(prompts, (list, tuple)):
        for i, p in enumerate(prompts):
            if isinstance(p, Tensor):
                check_token_ids(model, p, f"prompts[{i}]")

    truth = None
    if hasattr(prompts, "clean_tokens") and hasattr(prompts, "ground_truth"):
        task = prompts
        items = [task.clean_tokens[i, : int(task.lengths[i])] for i in range(len(task))]
        if targets is None:
            targets = [Contrast(int(a), int(b)) for a, b in zip(task.correct_tokens, task.wrong_tokens)]
        truth = task.ground_truth.positions
    else:
        if isinstance(prompts, (str, Tensor)):
            raise MechinterpError("global_attribution takes many prompts: a Task or a list of prompts (with targets).")
        items = list(prompts)
        if targets is None:
            raise MechinterpError("Pass one target per prompt (targets=[...]), or a Task whose answers are the targets.")
    targets = list(targets)
    if len(targets) != len(items):
        raise MechinterpError(f"{len(items)} prompts but {len(targets)} targets: pass one target per prompt.")
    if not items:
        raise EmptyInputError("global_attribution: no prompts.")
    stream = (attribute(model, p, t, method=method, warn=False, **method_options) for p, t in zip(items, targets))
    view = aggregate(stream, group_by, normalise=normalise, confidence=confidence, ground_truth=truth)
    import dataclasses

    return dataclasses.replace(view, options={"method": method, **{k: v if isinstance(v, (int, float, str, bool)) or v is None else repr(v)
                                                                   for k, v in method_options.items()}})
