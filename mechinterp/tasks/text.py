"""Writing task prompts the way a model's tokenizer expects, and finding words in them.

The language tasks sample prompts as lists of words (:mod:`mechinterp.tasks.language`).
How those words become text depends on the tokenizer kind
(:func:`~mechinterp.core.tokens.tokenizer_kind`):

* ``"word"`` (the zoo's word-level tokenizers): words joined by single spaces, with
  spaces around punctuation (``"went to the school , Martin"``), since the tokenizer
  splits on whitespace and the zoo models were trained on exactly this text;
* ``"subword"`` (BPE, SentencePiece): ordinary written text, no space before ``, . : ; ! ?``
  (``"went to the school, Martin"``), which is what a pretrained model has seen.

:func:`word_positions` finds the token position of a word by tokenising the prompt up to
that word and checks that this prefix tokenises exactly as the start of the whole prompt
(so the position is the one the model sees, BOS counted when the model prepends one).

Example:
    >>> render(["When", "Mary", "went", "to", "the", "school", ",", "Martin"], "subword")
    'When Mary went to the school, Martin'
    >>> render(["school", ",", "Martin"], "word")
    'school , Martin'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

__all__ = ["PUNCTUATION", "render", "word_positions"]

PUNCTUATION = frozenset(",.:;!?")


def render(words: Sequence[str], kind: Literal["word", "subword"]) -> str:
    """Join ``words`` into the prompt text for a tokenizer of ``kind`` (see module docstring)."""
    if kind == "word":
        return " ".join(words)
    text = ""
    for w in words:
        text += w if (not text or w in PUNCTUATION) else " " + w
    return text


def word_positions(model: Any, words: Sequence[str], indices: Sequence[int], kind: Literal["word", "subword"]) -> list[int] | None:
    """Token position of the last token of ``words[i]`` for each ``i`` in ``indices``.

    Positions count BOS when the model prepends one (``model.cfg.default_prepend_bos``).

    Returns:
        The positions, or ``None`` when a prefix of the prompt does not tokenise as the
        start of the whole prompt (a merge across the word boundary): the word has no
        position of its own and the prompt should not be used.
    """
    full = model.to_tokens(render(words, kind), truncate=False)[0]
    out = []
    for i in indices:
        prefix = model.to_tokens(render(words[: i + 1], kind), truncate=False)[0]
        if len(prefix) > len(full) or not bool((full[: len(prefix)] == prefix).all()):
            return None
        out.append(len(prefix) - 1)
    return out
