"""The ``induction`` task: continue a repeated random segment.

Clean prompts are ``BOS + A + A[:-1]`` for a segment ``A`` of distinct random words; the
model should predict ``A[-1]`` at the last position by induction: the current token
``A[-2]`` occurred before, and the token after that occurrence was ``A[-1]``. Two corruptions
(``corruption=``), both with a wrong answer that is a random word in neither prompt:

* ``"second_copy"`` (default): ``BOS + A + A'[:-1]``, the second copy replaced by fresh
  words (none from ``A``), so nothing repeats. Restoring the clean current token alone
  restores the behaviour, which suits position-by-position activation patching; but the
  first copy, hence the previous-token heads' output there (the induction keys) and the
  copied tokens (the values), is identical in both runs, so corrupted *edge* patching cannot
  see K-composition or the values.
* ``"random"``: ``BOS + C``, a random-token sequence of ``2 * seq_len - 1`` distinct fresh
  words, none from ``A`` (ACDC's corruption for induction). Queries, keys and values all
  differ: use it for circuit discovery (the ``zoo:attn-only-2l`` circuit bar does).

Ground truth, by construction: the answer is determined by the first-copy occurrence of
``A[-1]`` (what an induction head attends to) and of the current token ``A[-2]`` (what the
previous-token head links it to). For ``zoo:attn-only-2l`` the circuit is the one found
and verified at training time (its ``circuit.json``).

Works with any model that has a tokenizer: words are drawn from its vocabulary, leaving
out special tokens and, for sub-word tokenizers, pieces that are not one clean word with a
leading space (so the prompt text re-tokenises to the same ids).

Example:
    >>> import mechinterp
    >>> model = mechinterp.load("zoo:attn-only-2l")
    >>> task = mechinterp.tasks.load("induction", model, n=16)
    >>> task.clean_tokens.shape
    torch.Size([16, 20])
"""

from __future__ import annotations

import re
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from mechinterp.core.zoo_format import read_json
from mechinterp.errors import MechinterpError
from mechinterp.tasks.base import GroundTruth, Task, register

__all__ = ["CORRUPTIONS", "induction", "word_ids"]

CORRUPTIONS = ("second_copy", "random")

_SPECIAL = ("<pad>", "<bos>", "<unk>")
_ZOO_CIRCUITS = ("attn-only-2l",)
_WORD = re.compile(r"[A-Za-z]+")
_SUBWORD_SPACE = ("Ġ", "▁")  # byte-level BPE (GPT-2, Pythia, Llama 3) and SentencePiece


def word_ids(model: Any) -> Int[Tensor, " n_words"]:
    """Token ids usable as random words for ``model``'s tokenizer.

    Zoo models (word-level tokenizers): every token but ``<pad> <bos> <unk>``. Sub-word
    tokenizers: tokens that are a space marker (``Ġ`` or ``▁``) followed by ASCII letters
    only, so each is one whole word and a prompt's text tokenises back to the same ids.
    Other word-level tokenizers: tokens made of ASCII letters and digits.

    Raises:
        MechinterpError: the model has no tokenizer.
    """
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        raise MechinterpError(
            "The induction task needs a model with a tokenizer (to draw words and write prompt texts); "
            "this model has none. Load one with a tokenizer, e.g. mechinterp.load('zoo:attn-only-2l')."
        )
    d_vocab = model.cfg.d_vocab
    special = set(tok.all_special_ids)
    vocab = tok.get_vocab()
    special |= {vocab[s] for s in _SPECIAL if s in vocab}
    ids = [i for i in range(min(d_vocab, len(tok))) if i not in special]
    pieces = tok.convert_ids_to_tokens(ids)
    if getattr(model, "zoo_name", None) is not None:
        return torch.tensor(ids)
    subword = [i for i, p in zip(ids, pieces) if p[:1] in _SUBWORD_SPACE and _WORD.fullmatch(p[1:])]
    if subword:
        return torch.tensor(subword)
    return torch.tensor([i for i, p in zip(ids, pieces) if p.isascii() and p.isalnum()])


def _bos(model: Any) -> int | None:
    """The BOS id when the model prepends one, else ``None``."""
    if not getattr(model.cfg, "default_prepend_bos", True):
        return None
    return model.tokenizer.bos_token_id


@register("induction")
def induction(model: Any, n: int = 64, seed: int = 0, seq_len: int = 10, corruption: str = "second_copy") -> Task:
    """Generate ``n`` induction prompts ``BOS + A + A[:-1]`` with ``len(A) = seq_len``.

    Args:
        model: any model with a tokenizer (see :func:`word_ids` for the words used).
        n: number of prompts.
        seed: seed of the random draw; the same seed gives the same task.
        seq_len: length of the repeated segment ``A`` (at least 3); a prompt has
            ``2 * seq_len - 1`` tokens plus BOS.
        corruption: ``"second_copy"`` or ``"random"`` (see the module docstring).

    Returns:
        A :class:`Task`. ``ground_truth.positions[i]`` is ``[pos of A[-1] in the first copy,
        pos of A[-2] in the first copy]`` (token positions, BOS included);
        ``ground_truth.labels`` has per-position lists for probing: ``"position_in_repeat"``
        (index in ``A`` of the token in the second copy, ``-1`` elsewhere) and
        ``"repeated"`` (1 where the clean token occurred earlier in the prompt, else 0).

    Raises:
        MechinterpError: ``seq_len`` below 3, a prompt longer than ``n_ctx``, an unknown
            ``corruption``, or a vocabulary with too few words.

    Example:
        >>> task = induction(model, n=8, seed=0)  # doctest: +SKIP
        >>> task.accuracy(model(task.clean_tokens))  # doctest: +SKIP
        1.0
    """
    if seq_len < 3:
        raise MechinterpError(f"seq_len must be at least 3 (got {seq_len}).")
    if corruption not in CORRUPTIONS:
        raise MechinterpError(f"Unknown induction corruption {corruption!r}; use one of {CORRUPTIONS}.")
    words = word_ids(model)
    need = 3 * seq_len if corruption == "random" else 2 * seq_len  # A, the fresh words, the wrong answer
    if len(words) < need:
        raise MechinterpError(
            f"The tokenizer has only {len(words)} usable word tokens; the induction task with corruption="
            f"{corruption!r} needs at least {need}. Lower seq_len."
        )
    bos = _bos(model)
    off = 0 if bos is None else 1
    length = off + 2 * seq_len - 1
    if length > model.cfg.n_ctx:
        raise MechinterpError(f"Prompts of {length} tokens exceed n_ctx = {model.cfg.n_ctx}; lower seq_len.")

    gen = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(len(words), generator=gen)[:need] for _ in range(n)])
    draw = words[perms]  # [n, need]: A, then the fresh words, then the wrong answer: all distinct
    seg, fresh, wrong = draw[:, :seq_len], draw[:, seq_len : need - 1], draw[:, -1]
    prefix = torch.full((n, off), bos if bos is not None else 0, dtype=torch.long)
    clean = torch.cat([prefix, seg, seg[:, :-1]], dim=1)  # [n, length]
    if corruption == "random":
        corrupted = torch.cat([prefix, fresh], dim=1)  # [n, length]: no repeat, no word of A
    else:
        corrupted = torch.cat([prefix, seg, fresh], dim=1)  # [n, length]: second copy replaced

    second = list(range(off + seq_len, length))
    pos_in_repeat = [-1] * (off + seq_len) + list(range(seq_len - 1))
    repeated = [0] * (off + seq_len) + [1] * (seq_len - 1)
    gt = GroundTruth(
        positions=[[off + seq_len - 1, off + seq_len - 2] for _ in range(n)],
        labels={
            "position_in_repeat": [list(pos_in_repeat) for _ in range(n)],
            "repeated": [list(repeated) for _ in range(n)],
        },
        circuit=_circuit(model),
    )
    tok = model.tokenizer
    strip = slice(off, None)
    return Task(
        name="induction",
        clean_prompts=tok.batch_decode(clean[:, strip]),
        corrupted_prompts=tok.batch_decode(corrupted[:, strip]),
        clean_tokens=clean,
        corrupted_tokens=corrupted,
        lengths=torch.full((n,), length, dtype=torch.long),
        correct_answers=[tok.decode([i]) for i in seg[:, -1].tolist()],
        wrong_answers=[tok.decode([i]) for i in wrong.tolist()],
        correct_tokens=seg[:, -1].clone(),
        wrong_tokens=wrong.clone(),
        ground_truth=gt,
        meta={"seq_len": seq_len, "bos": bos is not None, "second_copy_positions": second, "corruption": corruption},
    )


def _circuit(model: Any) -> dict[str, Any] | None:
    name = getattr(model, "zoo_name", None)
    if name not in _ZOO_CIRCUITS:
        return None
    return read_json(name, "circuit.json")
