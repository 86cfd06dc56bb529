"""Candidate edits for :func:`~mechinterp.explain.counterfactual`: substitutions, deletions, insertions.

One search state is the original prompt with some edits applied. Each kind of edit is
proposed the same way: a first-order (HotFlip) estimate of the margin change ranks the
candidates, the ``top_k`` best at each place are kept, and the search verifies them with
exact forward passes. ``max_token_drop`` judges every edit by the same rule: **each token
that an edit puts into a new context must be at most** ``max_token_drop`` **nats less likely
there, under the model, than the token it stands in for was** (the context is the state
being edited, so a second edit is judged with the first one applied).

* **substitute** ``x_i → v`` — estimate ``(E[v] − E[x_i]) · g_i`` (``g_i`` the margin's
  gradient at the token embedding of position ``i``); plausible when
  ``log p(v | x_<i) ≥ log p(x_i | x_<i) − max_token_drop``.
* **delete** ``x_i`` — one candidate per position, so the shortlist of ``top_k ≥ 1`` per
  place holds it and every plausible deletion is verified (no estimate is needed to choose
  among one). Plausible when the token that moves into position ``i`` is about as likely
  without ``x_i`` as with it: ``log p(x_{i+1} | x_<i) ≥ log p(x_{i+1} | x_≤i) − max_token_drop``.
  The last token is never deleted (the answer is read after it; deleting it asks another
  question, as appending would), and with the filter on, without BOS, neither is the first
  (no prefix would judge the token that moves there).
* **insert** ``v`` before ``x_i`` — the prompt with the model's own likeliest (allowed)
  next token ``v*`` inserted is run forward and backward once per gap, and
  ``(E[v] − E[v*]) · g`` (``g`` the gradient at the inserted position) ranks the rest: HotFlip
  linearised at a real insertion. Plausible when ``v`` is about as likely as the token it
  displaces, ``log p(v | x_<i) ≥ log p(x_i | x_<i) − max_token_drop`` (the substitution rule),
  **and** the displaced token still fits after it, ``log p(x_i | x_<i, v) ≥ log p(x_i | x_<i)
  − max_token_drop``; the second check reads the candidate's own verification pass. An
  insertion goes between two tokens of the prompt (never before the first token or BOS,
  never after the last one, where it would change the position the answer is read at), one
  per gap, and not into a gap between two ``fixed`` tokens.

Edits do not overlap: a token is substituted or deleted at most once, an inserted token is
not edited again, and a deletion next to an insertion (the same as a substitution, for two
edits) is not proposed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from mechinterp.errors import MechinterpError

__all__ = ["EDIT_KINDS", "EditRules", "EditState", "check_edit_kinds", "insertion_anchor", "insertion_gaps", "plausibility_block",
           "propose"]

EDIT_KINDS = ("substitute", "delete", "insert")


def check_edit_kinds(edits: Sequence[str] | str) -> tuple[str, ...]:
    """The edit kinds to search, in canonical order; a MechinterpError for anything else."""
    if isinstance(edits, str):
        edits = (edits,)
    try:
        kinds = list(edits)
    except TypeError:
        raise MechinterpError(f"counterfactual: edits must be a tuple of edit kinds from {EDIT_KINDS}, "
                              f"got {edits!r}.") from None
    bad = [k for k in kinds if k not in EDIT_KINDS]
    if bad:
        raise MechinterpError(f"counterfactual: unknown edit kind {bad[0]!r}; choose from {', '.join(EDIT_KINDS)} "
                              "(e.g. edits=('substitute', 'delete', 'insert')).")
    if not kinds:
        raise MechinterpError(f"counterfactual: edits is empty; pass at least one of {EDIT_KINDS}.")
    return tuple(k for k in EDIT_KINDS if k in kinds)


@dataclass
class EditState:
    """The prompt with some edits applied, and what verifying it measured."""

    slots: list[int | None]  # token id per original position; None = deleted
    edits: list[tuple[int, str]]  # (original position, kind); an insertion's position is the token it precedes
    inserts: dict[int, int] = field(default_factory=dict)  # original position -> token id inserted before it
    # (j, least log p(token j+1 | tokens ≤ j)), checked on the candidate's own verification pass
    checks: list[tuple[int, float]] = field(default_factory=list)
    margin: float = float("inf")
    fluency: float = float("nan")
    plausible: bool = True

    def tokens(self) -> list[int]:
        out: list[int] = []
        for i, t in enumerate(self.slots):
            if i in self.inserts:
                out.append(self.inserts[i])
            if t is not None:
                out.append(t)
        return out

    def origins(self) -> list[int | None]:
        """Original position of each current token (``None`` for an inserted one)."""
        out: list[int | None] = []
        for i, t in enumerate(self.slots):
            if i in self.inserts:
                out.append(None)
            if t is not None:
                out.append(i)
        return out

    def changed(self) -> set[int]:
        """Original positions substituted or deleted."""
        return {p for p, kind in self.edits if kind != "insert"}


@dataclass(frozen=True)
class EditRules:
    """What the search may propose (fixed for one search)."""

    kinds: tuple[str, ...]
    editable: list[bool]
    vocab_ok: Bool[Tensor, " d_vocab"]
    max_token_drop: float | None
    fluent_pool: int | None
    top_k: int
    n_ctx: int


def plausibility_block(logits: Float[Tensor, "pos d_vocab"], cur: Tensor, rules: EditRules) -> Bool[Tensor, "pos d_vocab"]:
    """``True`` where token ``v`` may not be put at position ``j`` of the state ``cur`` (its
    tokens, ``logits`` its own pass): not allowed, outside the fluent pool, or (``max_token_drop``)
    more than that many nats less likely after ``cur[:j]`` than ``cur[j]``. Row 0 is all
    ``True`` while the filter is on (no prefix to judge by)."""
    n, d_vocab = len(cur), logits.shape[-1]
    block = torch.zeros(n, d_vocab, dtype=torch.bool)
    block |= ~rules.vocab_ok[None, :]
    if rules.fluent_pool is not None:  # only the model's own likeliest tokens at each position
        pool = logits[: n - 1].topk(min(rules.fluent_pool, d_vocab), dim=-1).indices  # [pos-1, pool]
        outside = torch.ones_like(block)
        outside[1:].scatter_(1, pool.cpu(), False)
        block |= outside
    if rules.max_token_drop is not None:  # only tokens about as likely as the one they stand in for
        logp = logits[: n - 1].log_softmax(-1).cpu()  # [pos-1, d_vocab]: log p(v | prefix)
        own = logp.gather(1, cur[1:, None])  # [pos-1, 1]: log p(current token | prefix)
        block[1:] |= logp < own - rules.max_token_drop
        block[0] = True
    return block


def insertion_gaps(state: EditState, rules: EditRules) -> list[int]:
    """Positions ``j`` of the state's tokens before which a token may be inserted."""
    if "insert" not in rules.kinds:
        return []
    origins = state.origins()
    if len(origins) >= rules.n_ctx:
        return []
    gaps = []
    for j in range(1, len(origins)):
        i = origins[j]
        if i is None or i in state.inserts or i == 0 or state.slots[i - 1] is None:
            continue
        if rules.editable[i] or rules.editable[i - 1]:
            gaps.append(j)
    return gaps


def insertion_anchor(logits: Float[Tensor, "pos d_vocab"], j: int, rules: EditRules) -> int:
    """``v*``: the model's likeliest allowed token after the state's tokens ``[:j]``."""
    row = logits[j - 1].float().cpu().masked_fill(~rules.vocab_ok, -float("inf"))
    return int(row.argmax())


def propose(state: EditState, logits: Float[Tensor, "pos d_vocab"], grad: Float[Tensor, "pos d_model"],
            embed: Float[Tensor, "pos d_model"], W_E: Float[Tensor, "d_vocab d_model"],
            insert_grads: dict[int, tuple[int, Tensor]], rules: EditRules) -> list[EditState]:
    """The shortlisted one-edit extensions of ``state``: substitutions, deletions, insertions (in that order).

    ``logits``, ``grad`` and ``embed`` are the state's own pass (its ``len(tokens)`` rows);
    ``insert_grads`` maps an insertion gap ``j`` to ``(v*, gradient at the inserted position)``.
    """
    tokens = state.tokens()
    n = len(tokens)
    origins = state.origins()
    changed = state.changed()
    cur = torch.tensor(tokens)
    out: list[EditState] = []
    free = [j for j, i in enumerate(origins) if i is not None and rules.editable[i] and i not in changed]
    block = plausibility_block(logits, cur, rules) if ("substitute" in rules.kinds and free) or insert_grads else None
    if "substitute" in rules.kinds and free:
        est = grad @ W_E.T - (grad * embed).sum(-1, keepdim=True)  # [pos, d_vocab]: first-order change of the margin
        sub_block = block.clone()
        sub_block[[j for j in range(n) if j not in set(free)]] = True
        sub_block[torch.arange(n), cur] = True
        est = est.masked_fill(sub_block, float("inf"))
        best_v = est[free].topk(min(rules.top_k, est.shape[1]), dim=-1, largest=False)  # the top_k of every free position
        for row, j in enumerate(free):
            for v, score in zip(best_v.indices[row].tolist(), best_v.values[row].tolist()):
                if score == float("inf"):
                    break
                slots = list(state.slots)
                slots[origins[j]] = v
                out.append(EditState(slots, state.edits + [(origins[j], "substitute")], dict(state.inserts)))
    if "delete" in rules.kinds and n > 2:
        # row r: log p(· | tokens ≤ r)
        logp = logits[: n - 1].log_softmax(-1).cpu() if rules.max_token_drop is not None else None
        for j in free:
            i = origins[j]
            if j == n - 1 or i in state.inserts or (i + 1) in state.inserts:
                continue  # the answer is read after the last token: it stays
            if logp is not None:  # the next token must stay about as likely without x_i as with it
                if j == 0:
                    continue
                nxt = tokens[j + 1]
                if float(logp[j - 1, nxt]) < float(logp[j, nxt]) - rules.max_token_drop:
                    continue
            slots = list(state.slots)
            slots[i] = None
            out.append(EditState(slots, state.edits + [(i, "delete")], dict(state.inserts)))
    if insert_grads:
        logp = logits[: n - 1].log_softmax(-1).cpu()
        for j, (anchor, g) in insert_grads.items():
            est = (W_E @ g) - (W_E[anchor] @ g)  # [d_vocab]: first-order change from the anchor insertion
            est = est.masked_fill(block[j], float("inf"))
            best = est.topk(min(rules.top_k, est.shape[0]), largest=False)
            i = origins[j]
            checks = [] if rules.max_token_drop is None else [(j, float(logp[j - 1, tokens[j]]) - rules.max_token_drop)]
            for v, score in zip(best.indices.tolist(), best.values.tolist()):
                if score == float("inf"):
                    break
                out.append(EditState(list(state.slots), state.edits + [(i, "insert")], {**state.inserts, i: v}, checks))
    return out
