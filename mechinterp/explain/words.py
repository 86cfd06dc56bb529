"""Explanations in words: a plain-language summary of measured evidence for one prediction.

:func:`explain_in_words` writes a few sentences from numbers it measures or is given, and
no language model: the prediction and its probability (and the runner-up); the prompt
tokens an attribution method ranks highest with their share of the total absolute
attribution; where a patching result says the information sits (per layer, the position
with the largest effect); a circuit's size and faithfulness. Every sentence lists the
**evidence keys** it cites, and every number in it is one of those values, formatted as
:func:`fmt` formats it (percentages for probabilities and shares). Token strings are
written between “curly quotes”, so the numbers of a sentence are the ones outside them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mechinterp.core.precision import runs_synced
from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError
from mechinterp.explain.common import bos_position, one_prompt, piece, token_id, token_strs
from mechinterp.viz import escape, table_html

__all__ = ["WordExplanation", "explain_in_words", "fmt", "numbers_in"]

PERCENT_KEYS = ("prob", "share", "fraction")


def fmt(key: str, value: Any) -> str:
    """How a cited value appears in a sentence: percentages (1 decimal) for probabilities,
    shares and fractions (keys ending in one of :data:`PERCENT_KEYS`), integers as they are,
    other numbers with 3 significant digits, strings between curly quotes."""
    if isinstance(value, str):
        return f"“{value}”"
    if isinstance(value, bool) or isinstance(value, int):
        return str(int(value))
    if key.split(".")[-1].endswith(PERCENT_KEYS):
        return f"{100 * float(value):.1f}%"
    return f"{float(value):.3g}"


def numbers_in(text: str) -> list[str]:
    """The numbers of a sentence (outside “curly quotes”), as written."""
    bare = re.sub(r"“[^”]*”", "", text)
    return re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?%?", bare)


@dataclass(frozen=True)
class WordExplanation(AbstractResult):
    """The result of :func:`explain_in_words`.

    Attributes:
        sentences: ``[{"text": ..., "cites": [evidence keys]}]`` in reading order.
        evidence: every number (and token) a sentence uses, by key.
        tokens: the prompt's token strings.
    """

    sentences: list[dict[str, Any]]
    evidence: dict[str, Any]
    tokens: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The sentences as one paragraph."""
        return " ".join(s["text"] for s in self.sentences)

    def __str__(self) -> str:
        return self.text

    def plot(self, ax: Any = None) -> Any:
        """The paragraph as a figure (for reports that collect figures)."""
        import textwrap

        from mechinterp.viz import pyplot

        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(9, 0.35 * len(self.sentences) * 2 + 0.6))
        else:
            fig = ax.figure
        ax.text(0, 1, "\n".join(textwrap.fill(s["text"], 110) for s in self.sentences), va="top", fontsize=9, family="sans-serif")
        ax.axis("off")
        return fig

    def to_html(self) -> str:
        """The sentences, each with the evidence it cites (offline)."""
        items = "".join(
            f"<li>{escape(s['text'])} <span class='muted'>[{escape(', '.join(s['cites']))}]</span></li>" for s in self.sentences)
        rows = [{"evidence": k, "value": v if isinstance(v, str) else float(v)} for k, v in self.evidence.items()]
        return f"<section><h3>explanation</h3><ol>{items}</ol>{table_html(rows)}</section>"


class _Writer:
    def __init__(self) -> None:
        self.evidence: dict[str, Any] = {}
        self.sentences: list[dict[str, Any]] = []

    def cite(self, key: str, value: Any) -> str:
        self.evidence[key] = value
        self._cites.append(key)
        return fmt(key, value)

    def sentence(self, build: Any) -> None:
        self._cites: list[str] = []
        text = build(self.cite)
        self.sentences.append({"text": text, "cites": list(dict.fromkeys(self._cites))})


@runs_synced
def explain_in_words(
    model: Any,
    prompt: str | Tensor,
    target: Any = None,
    *,
    attribution: Any = None,
    method: str = "integrated_gradients",
    patching: Any = None,
    circuit: Any = None,
    faithfulness: float | None = None,
    top_k: int = 3,
    **method_options: Any,
) -> WordExplanation:
    """A plain-language summary of the evidence for one prediction, every number cited.

    Args:
        model: a ``HookedTransformer``.
        prompt: a string or ``[pos]`` token ids.
        target: what the attribution explains (as :func:`mechinterp.attribution.attribute`
            takes it); ``None``: the logit of the model's top-1 prediction.
        attribution: a :class:`~mechinterp.attribution.TokenAttribution` of this prompt to
            use instead of computing one.
        method: the attribution method when ``attribution`` is not given.
        patching: a :class:`~mechinterp.patching.PatchResult` with ``layer`` and ``pos``
            axes (e.g. ``resid_pre`` by layer and position) for this prompt or task.
        circuit: a :class:`~mechinterp.circuits.Circuit` (its size is reported).
        faithfulness: the circuit's faithfulness (a fraction), if measured.
        top_k: how many tokens to name.
        **method_options: options of the attribution method.

    Returns:
        A :class:`WordExplanation`: ``sentences`` (each with the evidence keys it cites),
        ``evidence`` and ``text``.

    Example:
        >>> import mechinterp
        >>> from mechinterp.explain import explain_in_words
        >>> model = mechinterp.load("zoo:toy-lm")
        >>> print(explain_in_words(model, "The capital of France is", ("Paris", "Rome"), baseline="pad"))  # doctest: +SKIP
        The model predicts “Paris” with probability 99.9% ...
    """
    from mechinterp.attribution import TokenAttribution, attribute

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise MechinterpError(f"top_k must be an integer >= 1, got {top_k!r}.")
    tokens = one_prompt(model, prompt, "explain_in_words")
    strs = token_strs(model, tokens)
    with torch.no_grad():
        probs = model(tokens[None].to(model.cfg.device))[0, -1].float().softmax(-1).cpu()
    top2 = probs.topk(2)
    w = _Writer()
    first, second = int(top2.indices[0]), int(top2.indices[1])
    w.sentence(lambda c: f"The model predicts {c('prediction.token', piece(model, first))} with probability "
                         f"{c('prediction.prob', float(top2.values[0]))}; the runner-up is "
                         f"{c('runner_up.token', piece(model, second))} at {c('runner_up.prob', float(top2.values[1]))}.")
    if attribution is None:
        explained = target if target is not None else token_id(model, first)
        attribution = attribute(model, tokens, explained, method=method, warn=False, **method_options)
    elif not isinstance(attribution, TokenAttribution):
        raise MechinterpError(f"attribution must be a TokenAttribution, got {type(attribution).__name__}.")
    if len(attribution.tokens) != len(strs):
        raise MechinterpError(f"The attribution has {len(attribution.tokens)} tokens but the prompt has {len(strs)}: "
                              "pass the attribution of this prompt.")
    _attribution_sentences(w, attribution, strs, bos_position(model, tokens), top_k)
    if patching is not None:
        _patching_sentences(w, patching)
    if circuit is not None or faithfulness is not None:
        _circuit_sentence(w, circuit, faithfulness)
    return WordExplanation(w.sentences, w.evidence, strs)


def _attribution_sentences(w: _Writer, attr: Any, strs: list[str], has_bos: bool, top_k: int) -> None:
    row = attr.scores[0].float()
    start = 1 if has_bos else 0
    mags = row[start:].abs()
    total = float(mags.sum())
    if total == 0:
        w.sentence(lambda c: f"The {c('attribution.method', attr.method)} attribution is zero on every token.")
        return
    order = torch.argsort(mags, descending=True, stable=True)[:top_k].tolist()

    def build(c: Any) -> str:
        parts = []
        for rank, j in enumerate(order, 1):
            pos = j + start
            share = float(mags[j]) / total
            sign = "for" if float(row[pos]) >= 0 else "against"
            parts.append(f"{c(f'attribution.top{rank}.token', strs[pos])} at position {c(f'attribution.top{rank}.position', pos)} "
                         f"({c(f'attribution.top{rank}.share', share)} of the total, {sign})")
        head = f"By {c('attribution.method', attr.method)} on {c('attribution.target', attr.targets[0])}, the tokens that matter most are "
        return head + ", ".join(parts) + "."

    w.sentence(build)
    covered = sum(float(mags[j]) for j in order) / total
    w.sentence(lambda c: f"Together these {c('attribution.k', len(order))} tokens carry "
                         f"{c('attribution.topk.share', covered)} of the absolute attribution.")


def _patching_sentences(w: _Writer, patch: Any) -> None:
    dims = tuple(getattr(patch, "dims", ()))
    if "layer" not in dims or "pos" not in dims:
        raise MechinterpError(f"patching must be a PatchResult with 'layer' and 'pos' axes (got dims {dims}); "
                              "run e.g. mechinterp.patching.patch(model, task, site='resid_pre', by=('layer', 'pos')).")
    values = torch.as_tensor(patch.values).float()
    for d in reversed(range(len(dims))):  # other axes (heads): the entry of largest magnitude
        if dims[d] not in ("layer", "pos"):
            values = values.gather(d, values.abs().argmax(d, keepdim=True)).squeeze(d)
    if [d for d in dims if d in ("layer", "pos")] != ["layer", "pos"]:
        values = values.T  # [layer, pos]
    layers, positions = patch.labels["layer"], patch.labels["pos"]
    li, pi = divmod(int(values.abs().argmax()), values.shape[1])
    w.sentence(lambda c: f"Patching {c('patching.site', patch.site)} ({c('patching.direction', patch.direction)}) has its largest "
                         f"effect, {c('patching.max_effect', float(values[li, pi]))}, at layer {c('patching.max_layer', li)} "
                         f"and position {c('patching.max_position', pi)} {c('patching.max_label', positions[pi])}.")
    best = values.abs().argmax(1).tolist()  # per layer, the position with the largest effect
    runs: list[tuple[int, int, int]] = []  # (first layer, last layer, position)
    for layer, pos in enumerate(best):
        if runs and runs[-1][2] == pos:
            runs[-1] = (runs[-1][0], layer, pos)
        else:
            runs.append((layer, layer, pos))

    def build(c: Any) -> str:
        parts = []
        for i, (lo, hi, pos) in enumerate(runs):
            where = (f"at layer {c(f'patching.flow{i}.first_layer', lo)}" if lo == hi else
                     f"from layer {c(f'patching.flow{i}.first_layer', lo)} to {c(f'patching.flow{i}.last_layer', hi)}")
            parts.append(f"position {c(f'patching.flow{i}.position', pos)} {c(f'patching.flow{i}.label', positions[pos])} {where}")
        return "The information sits at " + ", then ".join(parts) + " (per layer, the position with the largest effect)."

    if len(layers) > 1:
        w.sentence(build)


def _circuit_sentence(w: _Writer, circuit: Any, faithfulness: float | None) -> None:
    def build(c: Any) -> str:
        parts = []
        if circuit is not None:
            nodes = circuit.nodes() if callable(getattr(circuit, "nodes", None)) else list(getattr(circuit, "nodes", []))
            parts.append(f"The circuit has {c('circuit.n_edges', int(circuit.n_edges))} edges between "
                         f"{c('circuit.n_nodes', len(nodes))} nodes")
        if faithfulness is not None:
            lead = "; it" if parts else "The circuit"
            parts.append(f"{lead} recovers {c('circuit.faithfulness_fraction', float(faithfulness))} of the model's metric")
        return "".join(parts) + "."

    w.sentence(build)
