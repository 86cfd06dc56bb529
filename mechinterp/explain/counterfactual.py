"""Counterfactual explanations: the smallest edit of a prompt that changes the model's prediction.

The search edits tokens (substitutions by default; ``edits=("substitute", "delete",
"insert")`` adds deletions and insertions) until the prediction leaves the current answer
(``target=None``) or becomes ``target``. The prediction is the top-1 token over the
vocabulary, or over ``among`` (a label set such as ``["positive", "negative"]``) when given.
Its distance to flipping is the **margin**

* away from the current answer ``y``: ``logit(y) - max_{j != y} logit(j)``;
* towards ``target`` ``t``: ``max_{j != t} logit(j) - logit(t)``;

and the prediction has flipped exactly when the margin is below 0.

Candidates are ranked by HotFlip's first-order estimate (Ebrahimi et al., 2018): with
``g_i = ∂margin/∂e_i`` the gradient at the token embedding of position ``i``, replacing
token ``x_i`` by ``v`` changes the margin by about ``(E[v] - E[x_i]) · g_i``. The estimate
ranks replacements only among **plausible** ones: ``v`` may replace ``x_i`` when the model
itself, reading the prefix ``x_<i``, finds ``v`` at most ``max_token_drop`` nats less likely
than ``x_i`` (``log p(v | x_<i) >= log p(x_i | x_<i) - max_token_drop``; default 3 nats, a
factor of 20). The pool adapts to the position: after "The capital of" every country is
about as likely as "France", so all of them compete, while a template word the model
predicts with certainty admits almost nothing. The ``top_k`` best estimates at each editable
position are then **verified** with batched forward passes (the estimate only orders
candidates; every reported number is measured). A beam of the ``beam`` best verified edits
goes one edit deeper until a flip is found or ``max_edits`` is reached, so the first depth
with a flip gives the fewest edits the search found.

Why the plausibility filter is the default: without it the fewest-edit flip of a small
model is often an edit that breaks the prompt's form. On zoo:toy-lm sentiment (label set),
replacing "i" after "Review :" by "negative", or the final ":", flips the label, and
unfiltered search edits a sentiment word in only 81 of 100 prompts; a review with two
positive words needs both replaced, which is two edits, and the filter makes the search
prefer that to one implausible edit. With the filter the flip edits the causal token (the
country, a name, a sentiment word) in 100/100 facts, 100/100 IOI and 99/100 sentiment test
prompts, with one edit in 100%, 100% and 80% of them (``benchmarks/results/explain.md``;
``tests/explain/test_counterfactual.py`` asserts the bar on 20 prompts per task).

Deletions and insertions (``edits=``, :mod:`mechinterp.explain.edits`) are ranked and judged
the same way: a first-order estimate shortlists the ``top_k`` best at each place (an insertion
is linearised at the model's own likeliest token inserted there), forward passes verify them,
and ``max_token_drop`` holds every token an edit puts into a new context (the token after a
deletion, the inserted token and the one it displaces) to the substitution's bound: at most
that many nats less likely than what it stands in for. An edit record names its
kind, its position in the original prompt and its tokens. The default searches substitutions
only: on the same 100 prompts per task, adding deletions and insertions flips no more prompts
and needs no fewer edits; on facts 38% of the flips become an insertion that changes the
question instead of the answer ("The capital city of Finland is" → "called"), so the country
is edited in 62% instead of 100% (on SmolLM2's 12 fact prompts: 8 instead of 11;
``benchmarks/results/explain.md``).

Constraints: ``fixed`` positions or token strings are never edited (BOS never is; without
BOS, position 0 has no prefix to judge a replacement by and is not edited while
``max_token_drop`` is on); ``allowed`` limits the replacement vocabulary (special tokens
are always excluded); ``fluent_pool`` keeps only the model's ``fluent_pool`` likeliest
tokens at each position; ``max_fluency_drop`` rejects edited prompts whose mean per-token
log-probability under the model itself falls by more than that many nats. Among the flips
of the fewest edits the most fluent one is returned (``select="fluency"``);
``select="margin"`` returns the most confident flip instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.core.precision import runs_synced
from mechinterp.core.results import AbstractResult
from mechinterp.core.tokens import tokenize
from mechinterp.core.validation import check_ids
from mechinterp.errors import MechinterpError
from mechinterp.explain.common import bos_position, one_prompt, piece, special_ids, token_id, token_ids, token_strs
from mechinterp.explain.edits import EditRules, EditState, check_edit_kinds, insertion_anchor, insertion_gaps, propose
from mechinterp.viz import escape, table_html

__all__ = ["DEFAULT_EDITS", "Counterfactual", "counterfactual"]

DEFAULT_EDITS: tuple[str, ...] = ("substitute",)


@dataclass(frozen=True)
class Counterfactual(AbstractResult):
    """The result of :func:`counterfactual`.

    Attributes:
        tokens: the original prompt's token strings.
        edited_tokens: the edited prompt's token strings (what was evaluated).
        edited_text: the edited prompt as text (decoded; BOS left out).
        edits: one dict per edit, by position: ``kind`` (``"substitute"``, ``"delete"`` or
            ``"insert"``), ``position`` (in the original prompt; an insertion's is the token it
            is inserted before), ``old``/``old_id`` (``None`` for an insertion),
            ``new``/``new_id`` (``None`` for a deletion), ``edited_position`` (where the new
            token is in ``edited_tokens``; ``None`` for a deletion).
        success: whether the prediction flipped (margin below 0).
        original_prediction / new_prediction: the top-1 token (over ``among`` if given).
        original_prob / new_prob: their probabilities (softmax over ``among`` if given,
            else over the vocabulary).
        margin_before / margin_after: the margin (see the module docstring); below 0 = flipped.
        fluency_before / fluency_after: mean log-probability per prompt token under the model.
        n_forward: sequences run forward to verify candidates (the prompt itself included).
        n_backward: sequences run forward and backward for gradients (one per beam state and
            depth, plus one per insertion gap searched).
        target: the target answer, or ``None`` (move away from the current prediction).
        among: the label set, or ``None`` (the whole vocabulary).
        options: the search options.
        retokenizes: whether ``edited_text`` tokenizes back to ``edited_tokens`` (the search
            keeps it so whenever the original prompt does).
    """

    tokens: list[str]
    edited_tokens: list[str]
    edited_text: str
    edits: list[dict[str, Any]]
    success: bool
    original_prediction: str
    new_prediction: str
    original_prob: float
    new_prob: float
    margin_before: float
    margin_after: float
    fluency_before: float
    fluency_after: float
    n_forward: int
    n_backward: int
    target: str | None = None
    among: list[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    retokenizes: bool = True

    @property
    def n_edits(self) -> int:
        return len(self.edits)

    @property
    def positions(self) -> list[int]:
        """The original tokens edited (substituted or deleted; an insertion edits none)."""
        return [int(e["position"]) for e in self.edits if e["kind"] != "insert"]

    @property
    def kinds(self) -> list[str]:
        """The kind of each edit, in the order of :attr:`edits`."""
        return [e["kind"] for e in self.edits]

    @staticmethod
    def _describe(e: dict[str, Any]) -> str:
        if e["kind"] == "substitute":
            return f"{e['old']!r}→{e['new']!r}@{e['position']}"
        if e["kind"] == "delete":
            return f"delete {e['old']!r}@{e['position']}"
        return f"insert {e['new']!r} before @{e['position']}"

    def summary(self) -> str:
        """One line: the edits and the prediction change."""
        parts = [self._describe(e) for e in self.edits]
        state = "flips" if self.success else "does not flip"
        return (f"{', '.join(parts) or 'no edit'} {state} the prediction {self.original_prediction!r} "
                f"(p={self.original_prob:.3f}) → {self.new_prediction!r} (p={self.new_prob:.3f}); "
                f"{self.n_forward} forward passes")

    def __str__(self) -> str:
        return self.summary()

    def plot(self, ax: Any = None) -> Any:
        """The original tokens with edits marked (red: substituted, struck: deleted, green: inserted
        between two tokens), and the prediction change in the title."""
        from mechinterp.viz import pyplot

        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(min(14, 1.5 + 0.6 * len(self.tokens)), 1.8))
        else:
            fig = ax.figure
        edited = {e["position"]: e for e in self.edits if e["kind"] != "insert"}
        for i, tok in enumerate(self.tokens):
            e = edited.get(i)
            ax.text(i, 1, tok, ha="center", va="center", fontsize=9,
                    bbox={"fc": "#fdd" if e else "#eee", "ec": "#c0392b" if e else "#ccc"})
            if e:
                ax.text(i, 0, "∅" if e["new"] is None else e["new"], ha="center", va="center", fontsize=9, color="#c0392b",
                        bbox={"fc": "white", "ec": "#c0392b"})
        for e in self.edits:
            if e["kind"] == "insert":
                x = e["position"] - 0.5
                ax.annotate("", xy=(x, 0.75), xytext=(x, 0.25), arrowprops={"arrowstyle": "->", "color": "#1e8449"})
                ax.text(x, 0, "+" + e["new"], ha="center", va="center", fontsize=9, color="#1e8449",
                        bbox={"fc": "white", "ec": "#1e8449"})
        ax.set_xlim(-0.7, len(self.tokens) - 0.3)
        ax.set_ylim(-0.6, 1.6)
        ax.axis("off")
        ax.set_title(f"{self.original_prediction!r} → {self.new_prediction!r} ({self.n_edits} edit(s), "
                     f"{'flipped' if self.success else 'not flipped'})", fontsize=10)
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        """The original and edited prompts with edits highlighted, then the numbers (offline)."""
        colour = {"substitute": "rgba(220,50,47,.35)", "delete": "rgba(220,50,47,.35)", "insert": "rgba(39,174,96,.35)"}
        before = {e["position"]: e["kind"] for e in self.edits if e["kind"] != "insert"}
        after = {e["edited_position"]: e["kind"] for e in self.edits if e.get("edited_position") is not None}

        def row(tokens: list[str], marks: dict[int, str]) -> str:
            return "<div>" + "".join(
                f"<span class='tok' title='{marks[i] if i in marks else ''}' style='background:"
                f"{colour[marks[i]] if i in marks else 'transparent'}"
                f"{';text-decoration:line-through' if marks.get(i) == 'delete' else ''}'>{escape(t)}</span>"
                for i, t in enumerate(tokens)) + "</div>"

        rows = [{"": "prediction", "before": self.original_prediction, "after": self.new_prediction},
                {"": "probability", "before": self.original_prob, "after": self.new_prob},
                {"": "margin", "before": self.margin_before, "after": self.margin_after},
                {"": "fluency (mean log-prob)", "before": self.fluency_before, "after": self.fluency_after}]
        return (f"<section><h3>counterfactual</h3><p>{escape(self.summary())}</p>{row(self.tokens, before)}"
                f"<div class='muted'>edited: {escape(self.edited_text)}</div>{row(self.edited_tokens, after)}"
                f"{table_html(rows)}</section>")


# --- the search ---------------------------------------------------------------------------


class _Objective:
    """The margin of one prompt's prediction (see the module docstring), batched."""

    def __init__(self, answer: int, away: bool, among: list[int] | None) -> None:
        self.answer, self.away, self.among = answer, away, among

    def __call__(self, final: Float[Tensor, "batch d_vocab"]) -> Float[Tensor, " batch"]:
        cols = final if self.among is None else final[:, self.among]
        col = self.answer if self.among is None else self.among.index(self.answer)
        own = cols[:, col]
        others = cols.clone()
        others[:, col] = -float("inf")
        best_other = others.max(-1).values
        return own - best_other if self.away else best_other - own


def _final_logits(model: Any, tokens: Int[Tensor, "batch pos"], lengths: Tensor, need_fluency: bool
                  ) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The logits at each row's last real token; with ``need_fluency``, the mean log-probability of
    each row's tokens and the per-token ``[batch, pos-1]`` log-probabilities (right padding)."""
    logits = model(tokens.to(model.cfg.device))  # [batch, pos, d_vocab]
    rows = torch.arange(len(tokens))
    final = logits[rows, (lengths - 1).to(logits.device)].float()
    if not need_fluency:
        return final, None, None
    logp = logits.float().log_softmax(-1)[:, :-1]  # [batch, pos-1, d_vocab]
    nxt = tokens[:, 1:].to(logits.device)
    lp = logp.gather(-1, nxt.unsqueeze(-1)).squeeze(-1)  # [batch, pos-1]
    mask = (torch.arange(tokens.shape[1] - 1)[None, :] < (lengths - 1)[:, None]).to(lp.device)
    fluency = (lp * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return final, fluency.cpu(), lp.cpu()


def _pad(rows: list[list[int]], pad: int) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(r) for r in rows])
    out = torch.full((len(rows), int(lengths.max())), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out, lengths


def _gradients(model: Any, rows: list[list[int]], objective: _Objective
               ) -> tuple[Float[Tensor, "batch pos d_model"], Float[Tensor, "batch pos d_model"], Float[Tensor, "batch pos d_vocab"]]:
    """∂margin/∂embedding for each row of tokens (one batched forward + backward, right padding),
    the token embeddings, the logits."""
    tokens, lengths = _pad(rows, _pad_id(model))
    store: dict[str, Tensor] = {}

    def leaf(act: Float[Tensor, "batch pos d_model"], hook: Any) -> Tensor:  # hook_embed: [batch, pos, d_model]
        act = act.detach().requires_grad_(True)
        store["embed"] = act
        return act

    with torch.enable_grad(), model.hooks(fwd_hooks=[("hook_embed", leaf)]):
        logits = model(tokens.to(model.cfg.device))
        final = logits[torch.arange(len(tokens)), (lengths - 1).to(logits.device)].float()
        margin = objective(final)
        (grad,) = torch.autograd.grad(margin.sum(), store["embed"])
    return grad.detach().float(), store["embed"].detach().float(), logits.detach().float()


def _insertion_gradients(model: Any, beams: list[EditState], logits: Tensor, objective: _Objective, rules: EditRules,
                         batch_size: int) -> tuple[list[dict[int, tuple[int, Tensor]]], int]:
    """Per beam state, ``{gap j: (v*, ∂margin/∂e at the inserted position)}`` with ``v*`` the model's
    likeliest allowed token there, inserted; and the number of sequences run backward."""
    jobs = []  # (beam index, gap, anchor, tokens with the anchor inserted)
    for b, state in enumerate(beams):
        toks = state.tokens()
        for j in insertion_gaps(state, rules):
            anchor = insertion_anchor(logits[b], j, rules)
            jobs.append((b, j, anchor, toks[:j] + [anchor] + toks[j:]))
    out: list[dict[int, tuple[int, Tensor]]] = [{} for _ in beams]
    for lo in range(0, len(jobs), batch_size):
        chunk = jobs[lo: lo + batch_size]
        grads, _, _ = _gradients(model, [row for *_, row in chunk], objective)
        for r, (b, j, anchor, _) in enumerate(chunk):
            out[b][j] = (anchor, grads[r, j].cpu())
    return out, len(jobs)


def _pad_id(model: Any) -> int:
    tok = model.tokenizer
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tok, name, None) if tok is not None else None
        if value is not None:
            return int(value)
    return 0


@runs_synced
def counterfactual(
    model: Any,
    prompt: str | Tensor,
    target: str | int | None = None,
    *,
    among: Sequence[str | int] | None = None,
    edits: Sequence[str] | str = DEFAULT_EDITS,
    fixed: Sequence[int | str] = (),
    allowed: Sequence[str | int] | None = None,
    max_edits: int = 3,
    top_k: int = 4,
    beam: int = 4,
    max_fluency_drop: float | None = None,
    max_token_drop: float | None = 3.0,
    fluent_pool: int | None = None,
    select: str = "fluency",
    batch_size: int = 64,
    deletions: bool | None = None,
) -> Counterfactual:
    """Find a small token edit of ``prompt`` that changes the model's prediction.

    Args:
        model: a ``HookedTransformer`` with a tokenizer.
        prompt: a string (BOS prepended as the model does) or ``[pos]`` token ids.
        target: the answer to flip to (``" Rome"`` or an id); ``None`` flips away from the
            current top-1 prediction.
        among: a label set (``["positive", "negative"]``): the prediction is the top-1 over
            these tokens only. ``None``: the whole vocabulary.
        edits: the kinds of edit searched, any of ``"substitute"``, ``"delete"`` and
            ``"insert"`` (see :mod:`mechinterp.explain.edits` for how each is ranked and
            judged). Default ``("substitute",)``, the recommended search: on zoo:toy-lm's facts,
            IOI and sentiment prompts deletions and insertions flip nothing more and, away
            from the prediction, let a flip change the question instead of the answer
            ("The capital city of Finland is" → "called"; module docstring).
        fixed: positions (ints, negative counts from the end) or token strings that must not
            be edited (substituted or deleted; an insertion may go next to a fixed token, not
            between two). BOS is always fixed.
        allowed: the vocabulary of substituted and inserted tokens (strings or ids);
            ``None``: every token except special tokens.
        max_edits: the most edits tried (depth of the beam search).
        top_k: candidates verified per editable position (and per insertion gap), beam state
            and depth (the ``top_k`` best by HotFlip's estimate at each place: a global top-k
            would spend the budget on the positions with the largest gradients).
        beam: edited prompts kept per depth (the ones with the lowest verified margin).
        max_token_drop: plausibility of an edit, in nats: ``v`` may replace ``x_i`` only if
            ``log p(v | x_<i) >= log p(x_i | x_<i) - max_token_drop`` under the model
            (default 3: at most 20 times less likely than the token it replaces); deletions
            and insertions are judged by the same rule on the tokens they move
            (:mod:`mechinterp.explain.edits`). ``None``: any edit (plain HotFlip, which on a
            small model often flips by breaking the prompt's form).
        max_fluency_drop: reject edits whose mean per-token log-probability under the model
            falls by more than this (nats); ``None``: no fluency constraint.
        fluent_pool: substitute or insert at position ``i`` only one of the model's own
            ``fluent_pool`` likeliest next tokens after position ``i - 1`` (position 0 is then
            never substituted); ``None``: no fixed-size pool. A fixed size can miss the word a
            flip needs ("Italy" is not among toy-lm's 50 likeliest words after "The capital
            of"); ``max_token_drop`` sizes the pool per position instead.
        select: among the flips of the fewest edits, keep the most fluent one
            (``"fluency"``, the default: the most plausible edit under the model itself;
            ties by margin) or the one with the lowest margin (``"margin"``: the most
            confident flip, often an edit that breaks the prompt's form).
        batch_size: sequences per verification (and insertion-gradient) forward pass.
        deletions: deprecated; ``deletions=True`` is ``edits=("substitute", "delete")``.

    Returns:
        A :class:`Counterfactual` with the edits, the new prediction and its probability,
        and the number of forward passes used. ``success`` is ``False`` when no flip was
        found within ``max_edits`` (the best edit found is returned). When the prompt's text
        tokenizes back to its tokens, so does every edited prompt the search considers
        (``edited_text`` is the prompt that was evaluated; ``retokenizes`` says so).

    Raises:
        MechinterpError: bad options (an unknown edit kind among them), a target that is not
            in ``among``, a target that is already the prediction, or nothing left to edit.

    Example:
        >>> import mechinterp
        >>> from mechinterp.explain import counterfactual
        >>> model = mechinterp.load("zoo:toy-lm")
        >>> cf = counterfactual(model, "The capital of France is", target="Rome")
        >>> cf.success, cf.edits[0]["old"], cf.edits[0]["new"]  # doctest: +SKIP
        (True, 'France', 'Italy')
        >>> cf = counterfactual(model, "The capital of France is", edits=("delete", "insert"))  # doctest: +SKIP
    """
    kinds = check_edit_kinds(edits)
    if deletions is not None:
        warnings.warn("counterfactual(deletions=...) is deprecated: pass edits=('substitute', 'delete') instead.",
                      DeprecationWarning, stacklevel=2)
        if not isinstance(deletions, bool):
            raise MechinterpError(f"counterfactual: deletions must be True or False, got {deletions!r}; use edits= instead.")
        if deletions:
            kinds = check_edit_kinds((*kinds, "delete"))
    if target is not None and not isinstance(target, str):
        check_ids(target, model.cfg.d_vocab, "target")
    for name, value, low in (("max_edits", max_edits, 1), ("top_k", top_k, 1), ("beam", beam, 1), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise MechinterpError(f"counterfactual: {name} must be an integer >= {low}, got {value!r}.")
    if max_fluency_drop is not None and not max_fluency_drop >= 0:
        raise MechinterpError(f"counterfactual: max_fluency_drop must be >= 0 nats or None, got {max_fluency_drop!r}.")
    if max_token_drop is not None and (isinstance(max_token_drop, bool) or not isinstance(max_token_drop, (int, float))
                                       or not max_token_drop >= 0):
        raise MechinterpError(f"counterfactual: max_token_drop must be >= 0 nats or None, got {max_token_drop!r}.")
    if fluent_pool is not None and (isinstance(fluent_pool, bool) or not isinstance(fluent_pool, int) or fluent_pool < 1):
        raise MechinterpError(f"counterfactual: fluent_pool must be an integer >= 1 or None, got {fluent_pool!r}.")
    if select not in ("fluency", "margin"):
        raise MechinterpError(f"counterfactual: select must be 'fluency' or 'margin', got {select!r}.")
    if model.tokenizer is None:
        raise MechinterpError("counterfactual needs a model with a tokenizer (to name and fill edits).")
    tokens = one_prompt(model, prompt, "counterfactual")
    n = len(tokens)
    among_ids = token_ids(model, among, "among")
    with torch.no_grad():
        final0, flu0, _ = _final_logits(model, tokens[None], torch.tensor([n]), True)
    top = int(final0[0].argmax()) if among_ids is None else among_ids[int(final0[0, among_ids].argmax())]
    if target is None:
        objective = _Objective(top, True, among_ids)
    else:
        t = token_id(model, target)
        if among_ids is not None and t not in among_ids:
            raise MechinterpError(f"The target {piece(model, t)!r} is not in among={list(among)!r}; add it or drop among.")
        if t == top:
            raise MechinterpError(f"The model already predicts {piece(model, t)!r}: pass another target, or "
                                  "target=None to flip away from it.")
        objective = _Objective(t, False, among_ids)
    fluency0 = float(flu0[0])

    rules = EditRules(kinds=kinds, editable=_editable(model, tokens, fixed), vocab_ok=_vocab_mask(model, allowed),
                      max_token_drop=max_token_drop, fluent_pool=fluent_pool, top_k=top_k, n_ctx=int(model.cfg.n_ctx))
    W_E = model.W_E.detach().float().cpu()  # [d_vocab, d_model]
    bos = bos_position(model, tokens)
    text_check = _retokenizes(model, tokens.tolist(), bos)  # hold every candidate to it when the prompt itself passes

    start = EditState(tokens.tolist(), [], margin=float(objective(final0)[0]), fluency=fluency0)
    n_forward, n_backward = 1, 0
    beams, best, found = [start], start, None
    for _ in range(max_edits):
        grads, embeds, logits = _gradients(model, [s.tokens() for s in beams], objective)
        n_backward += len(beams)
        logits = logits.cpu()
        inserts, n_insert = _insertion_gradients(model, beams, logits, objective, rules, batch_size)
        n_backward += n_insert
        seen: set[tuple] = set()
        cands: list[EditState] = []
        for b, state in enumerate(beams):
            m = len(state.tokens())
            for cand in propose(state, logits[b, :m], grads[b, :m].cpu(), embeds[b, :m].cpu(), W_E, inserts[b], rules):
                _add(cands, seen, cand)
        if text_check:
            cands = [c for c in cands if _retokenizes(model, c.tokens(), bos)]
        if not cands:
            break
        n_forward += _verify(model, cands, objective, batch_size)
        ok = [c for c in cands if c.plausible and (max_fluency_drop is None or fluency0 - c.fluency <= max_fluency_drop)]
        flips = [c for c in ok if c.margin < 0]
        if flips:
            found = min(flips, key=(lambda c: (-c.fluency, c.margin)) if select == "fluency" else (lambda c: (c.margin, -c.fluency)))
            break
        if not ok:
            break
        ok.sort(key=lambda c: c.margin)
        beams = ok[:beam]
        if beams[0].margin < best.margin:
            best = beams[0]
    final_state = found if found is not None else best
    return _result(model, tokens, final_state, start, among_ids, target, n_forward, n_backward, {
        "edits": list(kinds), "max_edits": max_edits, "top_k": top_k, "beam": beam,
        "max_fluency_drop": max_fluency_drop, "max_token_drop": max_token_drop, "fluent_pool": fluent_pool, "select": select,
        "fixed": [str(f) for f in fixed], "allowed": None if allowed is None else len(list(allowed)),
    })


def _add(cands: list[EditState], seen: set[tuple], state: EditState) -> None:
    key = tuple(state.tokens())
    if key not in seen:
        seen.add(key)
        cands.append(state)


def _retokenizes(model: Any, ids: list[int], bos: bool) -> bool:
    """Whether the decoded text of ``ids`` (BOS left out) tokenizes back to ``ids``."""
    text = model.tokenizer.decode(ids[1:] if bos else ids)
    if not text.strip():
        return False
    return tokenize(model, text, name="counterfactual").tokens[0].tolist() == ids


def _verify(model: Any, cands: list[EditState], objective: _Objective, batch_size: int) -> int:
    """Measure margin and fluency of every candidate, and its insertion checks; returns the sequences run."""
    pad = _pad_id(model)
    with torch.no_grad():
        for lo in range(0, len(cands), batch_size):
            chunk = cands[lo: lo + batch_size]
            tokens, lengths = _pad([c.tokens() for c in chunk], pad)
            final, flu, lp = _final_logits(model, tokens, lengths, True)
            margin = objective(final).cpu()
            for r, (c, m, f) in enumerate(zip(chunk, margin.tolist(), flu.tolist())):
                c.margin, c.fluency = m, f
                c.plausible = all(float(lp[r, j]) >= least for j, least in c.checks)
    return len(cands)


def _editable(model: Any, tokens: Tensor, fixed: Sequence[int | str]) -> list[bool]:
    n = len(tokens)
    strs = token_strs(model, tokens)
    editable = [True] * n
    if bos_position(model, tokens):
        editable[0] = False
    if isinstance(fixed, (str, int)):
        fixed = [fixed]
    for f in fixed:
        if isinstance(f, bool):
            raise MechinterpError(f"fixed entries must be positions (int) or token strings, got {f!r}.")
        if isinstance(f, int):
            if not -n <= f < n:
                raise MechinterpError(f"fixed position {f} is outside the prompt of {n} tokens (0..{n - 1}).")
            editable[f % n] = False
        elif isinstance(f, str):
            hits = [i for i, s in enumerate(strs) if s == f or s.strip() == f.strip()]
            if not hits:
                raise MechinterpError(f"fixed token {f!r} is not in the prompt's tokens {strs}.")
            for i in hits:
                editable[i] = False
        else:
            raise MechinterpError(f"fixed entries must be positions (int) or token strings, got {f!r}.")
    if not any(editable):
        raise MechinterpError("Every position is fixed: nothing left to edit. Fix fewer positions.")
    return editable


def _vocab_mask(model: Any, allowed: Sequence[str | int] | None) -> Tensor:
    mask = torch.zeros(model.cfg.d_vocab, dtype=torch.bool)
    if allowed is None:
        mask[:] = True
    else:
        if isinstance(allowed, (str, int)):
            raise MechinterpError(f"allowed must be a list of tokens (strings or ids), got {allowed!r}.")
        ids = [token_id(model, a) for a in allowed]
        if not ids:
            raise MechinterpError("allowed is empty: pass at least one replacement token, or None for the whole vocabulary.")
        mask[ids] = True
    for s in special_ids(model):
        mask[s] = False
    if not mask.any():
        raise MechinterpError("No replacement token is allowed (special tokens are always excluded).")
    return mask


def _result(model: Any, tokens: Tensor, state: EditState, start: EditState, among_ids: list[int] | None,
            target: Any, n_forward: int, n_backward: int, options: dict[str, Any]) -> Counterfactual:
    new = torch.tensor(state.tokens())
    with torch.no_grad():  # the reported predictions (not counted: the search measured both already)
        before, _, _ = _final_logits(model, tokens[None], torch.tensor([len(tokens)]), False)
        after, _, _ = _final_logits(model, new[None], torch.tensor([len(new)]), False)
    finals = torch.cat([before, after]).cpu()

    def pred(final: Tensor) -> tuple[str, float]:
        if among_ids is None:
            probs = final.softmax(-1)
            i = int(probs.argmax())
            return piece(model, i), float(probs[i])
        probs = final[among_ids].softmax(-1)
        i = int(probs.argmax())
        return piece(model, among_ids[i]), float(probs[i])

    (p0, q0), (p1, q1) = pred(finals[0]), pred(finals[1])
    origins = state.origins()
    edits = []
    for pos, kind in sorted(state.edits):  # by position; an insertion before the token it precedes
        if kind == "insert":
            old, new_id, at = None, state.inserts[pos], origins.index(pos) - 1
        else:
            old, new_id = int(tokens[pos]), state.slots[pos]
            at = None if new_id is None else origins.index(pos)
        edits.append({"position": pos, "kind": kind, "old": None if old is None else piece(model, old),
                      "new": None if new_id is None else piece(model, new_id), "old_id": old, "new_id": new_id,
                      "edited_position": at})
    bos = bos_position(model, tokens)
    text_ids = new[1:] if bos else new
    return Counterfactual(
        tokens=token_strs(model, tokens), edited_tokens=token_strs(model, new), edited_text=model.tokenizer.decode(text_ids.tolist()),
        edits=edits, success=bool(state.margin < 0), original_prediction=p0, new_prediction=p1, original_prob=q0, new_prob=q1,
        margin_before=start.margin, margin_after=state.margin, fluency_before=start.fluency, fluency_after=state.fluency,
        n_forward=n_forward, n_backward=n_backward, target=None if target is None else piece(model, token_id(model, target)),
        among=None if among_ids is None else [piece(model, i) for i in among_ids], options=options,
        retokenizes=_retokenizes(model, new.tolist(), bos),
    )
