"""Chain-of-thought faithfulness (Lanham et al., 2023): does the answer depend on the scratchpad?

Each example is a question, the scratchpad the model wrote (or was given), and the suffix
after which it answers (``" So the answer is"``, ``" ="``). The model's answer with the
intact scratchpad is its top-1 next token after the suffix. Then the scratchpad is
intervened on and the answer read again:

* ``truncate@f``: keep only the first ``floor(f · len)`` scratchpad tokens (early answering;
  ``f = 0`` drops the scratchpad);
* ``corrupt``: replace one scratchpad token (drawn per example with ``seed``) by another
  token from ``corrupt_vocab`` (default: the tokens that occur in the examples' scratchpads,
  so a step is replaced by another plausible step);
* ``filler``: replace every scratchpad token by a filler token (same length, no content).

Per example and intervention the result says whether the answer changed and how much
probability the original answer lost; per intervention the **dependence** is the share of
examples whose answer changed. A model whose answer reads its scratchpad has a high
dependence under ``corrupt``; one that computes the answer from the question alone has a
dependence near 0. Ground truth: the zoo's scratchpad twins ``zoo:cot-reader`` (its answer
reads its scratchpad) and ``zoo:cot-direct`` (same task, same scratchpad, answer computed from
the question): ``corrupt`` changes the reader's answer on 100% of examples and the direct
twin's on 0% (``tests/explain/test_cot.py``, the model cards). Truncation changes both: neither
was trained without a scratchpad, so a shorter prompt is out of distribution for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.precision import runs_synced
from mechinterp.core.results import AbstractResult
from mechinterp.errors import EmptyInputError, MechinterpError
from mechinterp.explain.common import piece
from mechinterp.viz import table_html
from mechinterp.core.validation import check_count

__all__ = ["CoTFaithfulness", "cot_faithfulness"]


@dataclass(frozen=True)
class CoTFaithfulness(AbstractResult):
    """The result of :func:`cot_faithfulness`.

    Attributes:
        interventions: the interventions, one row each (``"truncate@0"``, ``"corrupt"``, ...).
        changed: ``[n_interventions, n_examples]`` 1 where the answer changed.
        prob_drop: ``[n_interventions, n_examples]`` p(original answer) intact minus intervened.
        dependence: per intervention, the share of examples whose answer changed.
        answers: the model's answer per example with the intact scratchpad.
        options: the options used.
    """

    interventions: list[str]
    changed: Float[Tensor, "n_interventions n_examples"]
    prob_drop: Float[Tensor, "n_interventions n_examples"]
    dependence: dict[str, float]
    answers: list[str]
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "changed", torch.as_tensor(self.changed, dtype=torch.float32))
        object.__setattr__(self, "prob_drop", torch.as_tensor(self.prob_drop, dtype=torch.float32))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CoTFaithfulness):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def plot(self, ax: Any = None) -> Any:
        """Dependence per intervention (share of answers changed) with the mean probability drop."""
        from mechinterp.viz import pyplot

        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(self.interventions), 3))
        else:
            fig = ax.figure
        x = np.arange(len(self.interventions))
        ax.bar(x - 0.2, [self.dependence[i] for i in self.interventions], width=0.4, label="answer changed")
        ax.bar(x + 0.2, self.prob_drop.mean(1).tolist(), width=0.4, label="mean p(answer) drop")
        ax.set_xticks(x, labels=self.interventions)
        ax.set_ylim(min(0, float(self.prob_drop.mean(1).min())) - 0.05, 1.05)
        ax.legend(fontsize=8)
        ax.set_title(f"chain-of-thought dependence ({self.changed.shape[1]} examples)")
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        """The dependence table (offline)."""
        rows = [{"intervention": i, "answer changed": self.dependence[i], "mean p(answer) drop": float(self.prob_drop[k].mean())}
                for k, i in enumerate(self.interventions)]
        return f"<section><h3>chain-of-thought faithfulness</h3><p class='muted'>{len(self.answers)} examples</p>{table_html(rows)}</section>"


def _ids(model: Any, part: str | Tensor | Sequence[int], first: bool) -> list[int]:
    if isinstance(part, str):
        if model.tokenizer is None:
            raise MechinterpError("This model has no tokenizer: give the examples as token ids.")
        if not part:
            return []
        return model.to_tokens(part, prepend_bos=first and model.cfg.default_prepend_bos)[0].tolist()
    return torch.as_tensor(part, dtype=torch.long).flatten().tolist()


@runs_synced
def cot_faithfulness(
    model: Any,
    examples: Sequence[tuple[Any, Any, Any]],
    *,
    truncations: Sequence[float] = (0.0, 0.5),
    corrupt: bool = True,
    filler: str | int | None = " .",
    corrupt_vocab: Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> CoTFaithfulness:
    """Measure how much the model's answer depends on its scratchpad.

    Args:
        model: a ``HookedTransformer``.
        examples: ``(question, scratchpad, suffix)`` triples, as strings (the question gets
            BOS as the model prepends it) or token ids; the answer is the top-1 token after
            ``suffix``.
        truncations: fractions of the scratchpad kept for the early-answering interventions.
        corrupt: include the one-step corruption.
        filler: the filler token (a single-token string or an id); ``None`` leaves the filler
            intervention out.
        corrupt_vocab: replacement tokens for the corruption (default: the scratchpads' tokens).
        seed: which step is corrupted and by what.
        batch_size: sequences per forward pass.

    Returns:
        A :class:`CoTFaithfulness`.

    Example:
        >>> res = cot_faithfulness(model, [("Q: 3 + 4 =", " 3 plus 4 is 7 .", " A:")])  # doctest: +SKIP
        >>> res.dependence  # doctest: +SKIP
    """
    check_count(batch_size, "batch_size")
    examples = list(examples)
    if not examples:
        raise EmptyInputError("cot_faithfulness: no examples; pass (question, scratchpad, suffix) triples.")
    if any(not isinstance(e, (tuple, list)) or len(e) != 3 for e in examples):
        raise MechinterpError("Each example must be a (question, scratchpad, suffix) triple.")
    if any(not 0 <= f < 1 for f in truncations):
        raise MechinterpError(f"truncations must be fractions in [0, 1), got {list(truncations)}.")
    parts = [(_ids(model, q, True), _ids(model, s, False), _ids(model, x, False)) for q, s, x in examples]
    if any(not s for _, s, _ in parts):
        raise MechinterpError("An example has an empty scratchpad: there is nothing to intervene on.")
    if any(not q for q, _, _ in parts):
        raise MechinterpError("An example has an empty question.")
    fill_id = None
    if filler is not None:
        fill = _ids(model, filler, False) if isinstance(filler, str) else [int(filler)]
        if len(fill) != 1:
            raise MechinterpError(f"The filler {filler!r} is {len(fill)} tokens; pass a single-token filler (e.g. ' .').")
        fill_id = fill[0]
    vocab = sorted({t for _, s, _ in parts for t in s}) if corrupt_vocab is None else [int(t) for t in corrupt_vocab]
    if corrupt and len(vocab) < 2:
        raise MechinterpError("The corruption needs at least two distinct scratchpad tokens; pass corrupt_vocab.")
    rng = np.random.default_rng(seed)

    variants: dict[str, list[list[int]]] = {"intact": [q + s + x for q, s, x in parts]}
    for f in truncations:
        variants[f"truncate@{f:g}"] = [q + s[: int(np.floor(f * len(s)))] + x for q, s, x in parts]
    if corrupt:
        rows = []
        for q, s, x in parts:
            j = int(rng.integers(len(s)))
            choices = [t for t in vocab if t != s[j]]
            new = list(s)
            new[j] = int(choices[int(rng.integers(len(choices)))])
            rows.append(q + new + x)
        variants["corrupt"] = rows
    if fill_id is not None:
        variants["filler"] = [q + [fill_id] * len(s) + x for q, s, x in parts]
    too_long = max(len(r) for rows in variants.values() for r in rows)
    if too_long > model.cfg.n_ctx:
        raise MechinterpError(f"An example is {too_long} tokens, more than n_ctx={model.cfg.n_ctx}; shorten it.")

    probs = {name: _final_probs(model, rows, batch_size) for name, rows in variants.items()}
    base = probs.pop("intact")
    answer = base.argmax(-1)
    p0 = base.gather(-1, answer[:, None])[:, 0]
    names = list(probs)
    changed = torch.stack([(probs[n].argmax(-1) != answer).float() for n in names])
    drop = torch.stack([p0 - probs[n].gather(-1, answer[:, None])[:, 0] for n in names])
    dependence = {n: float(changed[k].mean()) for k, n in enumerate(names)}
    return CoTFaithfulness(names, changed, drop, dependence, [piece(model, int(a)) for a in answer],
                           {"truncations": list(truncations), "corrupt": corrupt, "filler": None if filler is None else str(filler),
                            "seed": seed, "n_examples": len(parts)})


def _final_probs(model: Any, rows: list[list[int]], batch_size: int) -> Float[Tensor, "batch d_vocab"]:
    pad = 0
    out = []
    with torch.no_grad():
        for lo in range(0, len(rows), batch_size):
            chunk = rows[lo: lo + batch_size]
            lengths = torch.tensor([len(r) for r in chunk])
            tokens = torch.full((len(chunk), int(lengths.max())), pad, dtype=torch.long)
            for i, r in enumerate(chunk):
                tokens[i, : len(r)] = torch.tensor(r)
            logits = model(tokens.to(model.cfg.device))  # [batch, pos, d_vocab]
            out.append(logits[torch.arange(len(chunk)), (lengths - 1).to(logits.device)].float().softmax(-1).cpu())
    return torch.cat(out)
