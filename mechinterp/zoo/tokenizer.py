"""Word-level tokenizers for zoo models, saved as Hugging Face ``tokenizer.json`` folders.

TransformerLens re-loads a model's tokenizer from its ``name_or_path`` (to get a copy that
prepends BOS), so a tokenizer built in memory must be saved to a folder and loaded back
from it before it is handed to ``HookedTransformer``. :func:`word_tokenizer` does that.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mechinterp.errors import MechinterpError

__all__ = ["SPECIAL_TOKENS", "word_tokenizer"]

SPECIAL_TOKENS = ("<pad>", "<bos>", "<unk>")


def word_tokenizer(words: Sequence[str], folder: str | Path | None = None) -> Any:
    """A whitespace word-level tokenizer over ``words`` (after ``<pad> <bos> <unk>``).

    Token ids are 0 = ``<pad>``, 1 = ``<bos>``, 2 = ``<unk>``, then ``words`` in order.
    Text is split on whitespace, so ``" Paris"`` and ``"Paris"`` are the same single token,
    and ``to_str_tokens`` returns the bare words.

    Args:
        words: the vocabulary, without duplicates.
        folder: where to save it; a temporary folder if omitted.

    Returns:
        A ``PreTrainedTokenizerFast`` loaded from ``folder`` (so TransformerLens can reload it).

    Example:
        >>> tok = word_tokenizer(["a", "b"])
        >>> tok("a b")["input_ids"]
        [3, 4]
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if len(set(words)) != len(words):
        seen: set[str] = set()
        dup = next(w for w in words if w in seen or seen.add(w))  # type: ignore[func-returns-value]
        raise MechinterpError(f"word_tokenizer: the word {dup!r} is in the vocabulary twice; pass each word once.")
    vocab = {w: i for i, w in enumerate([*SPECIAL_TOKENS, *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<bos>", pad_token="<pad>", unk_token="<unk>"
    )
    if folder is None:
        folder = tempfile.mkdtemp(prefix="mechinterp-tok-")
    fast.save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
