"""Tasks from your own prompts: :func:`from_pairs`.

Give clean prompts, corrupted prompts (each the same number of tokens as its clean
prompt), the right answer and a wrong answer per prompt, and get a :class:`Task` that
every method accepts: patching, circuits, attribution with a contrastive target, probes.
Everything is checked first, with errors that say what to change: lists of different
lengths, a corrupted prompt of another token length, an answer that is several tokens, a
word the tokenizer does not know, an answer written without the leading space the model
continues with (``"Paris"`` for ``" Paris"`` on a BPE tokenizer).

Ground truth: by default the positions where a clean prompt and its corrupted prompt
differ (what patching should find), unless you pass ``positions=``.

Example:
    >>> import mechinterp
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> task = mechinterp.tasks.from_pairs(
    ...     model,
    ...     clean=["The capital of France is", "The capital of Peru is"],
    ...     corrupted=["The capital of Spain is", "The capital of Chile is"],
    ...     answers=["Paris", "Lima"],
    ...     wrong_answers=["Madrid", "Santiago"],
    ... )
    >>> task.ground_truth.positions
    [[4], [4]]
    >>> task.accuracy(model(task.clean_tokens))
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mechinterp.core.validation import vocab_signature
from mechinterp.core.tokens import Tokenized, answer_tokens, check_same_lengths, tokenize, tokenizer_kind
from mechinterp.errors import EmptyInputError, ShapeMismatchError, UnknownTokenError
from mechinterp.tasks.base import GroundTruth, Task

__all__ = ["from_pairs"]


def from_pairs(
    model: Any,
    clean: Sequence[str],
    corrupted: Sequence[str],
    answers: Sequence[str],
    wrong_answers: Sequence[str],
    *,
    name: str = "custom",
    positions: Sequence[Sequence[int]] | None = None,
    labels: dict[str, Sequence[Any]] | None = None,
    check_leading_space: bool = True,
) -> Task:
    """Make a :class:`Task` from your own clean/corrupted prompt pairs, in one call.

    Prompts are tokenised as the model does (a BOS token in front only when
    ``model.cfg.default_prepend_bos``); the answer is read at each prompt's last token.

    Args:
        model: a ``HookedTransformer`` with a tokenizer.
        clean: the prompts whose behaviour you study.
        corrupted: one per clean prompt, with the same number of tokens (swap words for
            words of the same token count).
        answers: the correct next token per prompt (``" Paris"`` on a BPE tokenizer).
        wrong_answers: the contrasting next token per prompt (``" Madrid"``).
        name: the task's name in results.
        positions: ground-truth token positions per prompt; by default where the clean
            and corrupted tokens differ.
        labels: per-prompt concept labels for probing, ``{"country": [...]}``.
        check_leading_space: as in :func:`~mechinterp.core.tokens.answer_tokens`.

    Returns:
        A :class:`Task`; ``meta`` has ``source="from_pairs"``, ``prepend_bos`` and the
        model's accuracy is one call away (``task.evaluate(model)``, ``task.solved(model)``).

    Raises:
        EmptyInputError: no prompts.
        UnknownTokenError: a prompt word a word-level tokenizer does not know (``<unk>``).
        ShapeMismatchError: lists of different lengths, or a corrupted prompt whose token
            count differs from its clean prompt's (the message names the pair).
        MultiTokenAnswerError, UnknownTokenError, LeadingSpaceError: an answer that is not
            one known token in the form the model continues with.
    """
    clean, corrupted, answers, wrong_answers = list(clean), list(corrupted), list(answers), list(wrong_answers)
    if not clean:
        raise EmptyInputError("from_pairs needs at least one clean prompt.")
    sizes = {"clean": len(clean), "corrupted": len(corrupted), "answers": len(answers), "wrong_answers": len(wrong_answers)}
    extra = {f"labels[{k!r}]": len(v) for k, v in (labels or {}).items()}
    if positions is not None:
        extra["positions"] = len(positions)
    if len(set(sizes.values()) | set(extra.values())) != 1:
        raise ShapeMismatchError(
            f"from_pairs needs one entry per prompt in every list; got {({**sizes, **extra})}. Pair them one to one."
        )
    clean_tok, corrupted_tok = tokenize(model, clean), tokenize(model, corrupted)
    _check_known_words(model, clean_tok, clean, "clean")
    _check_known_words(model, corrupted_tok, corrupted, "corrupted")
    try:
        check_same_lengths(clean_tok, corrupted_tok)
    except ShapeMismatchError as err:
        bad = int((clean_tok.lengths != corrupted_tok.lengths).nonzero()[0, 0])
        raise ShapeMismatchError(
            f"{err} Pair {bad}: {clean[bad]!r} is {model.to_str_tokens(clean[bad])} but {corrupted[bad]!r} is "
            f"{model.to_str_tokens(corrupted[bad])}."
        ) from None
    correct_ids = answer_tokens(model, answers, check_leading_space=check_leading_space)
    wrong_ids = answer_tokens(model, wrong_answers, check_leading_space=check_leading_space)
    if positions is None:
        differs = (clean_tok.tokens != corrupted_tok.tokens) & clean_tok.attention_mask.bool()  # [batch, pos]
        positions = [row.nonzero().flatten().tolist() for row in differs]
    return Task(
        name=name,
        clean_prompts=clean,
        corrupted_prompts=corrupted,
        clean_tokens=clean_tok.tokens,
        corrupted_tokens=corrupted_tok.tokens,
        lengths=clean_tok.lengths,
        correct_answers=answers,
        wrong_answers=wrong_answers,
        correct_tokens=correct_ids,
        wrong_tokens=wrong_ids,
        ground_truth=GroundTruth(positions=[list(p) for p in positions], labels={k: list(v) for k, v in (labels or {}).items()}),
        meta={"source": "from_pairs", "prepend_bos": bool(model.cfg.default_prepend_bos), "n": len(clean),
              "vocab": vocab_signature(model)},
    )


def _check_known_words(model: Any, batch: Tokenized, prompts: list[str], which: str) -> None:
    """Raise :class:`UnknownTokenError` when a word-level tokenizer turned a prompt word into
    ``<unk>`` (every unknown word then looks the same to the model)."""
    tok = model.tokenizer
    unk = getattr(tok, "unk_token_id", None)
    if unk is None or tokenizer_kind(model) != "word":
        return
    hit = ((batch.tokens == unk) & batch.attention_mask.bool()).nonzero()
    if len(hit):
        i = int(hit[0, 0])
        words = [w for w in prompts[i].split() if tok.convert_tokens_to_ids(w) == unk and w != tok.unk_token]
        if words:
            raise UnknownTokenError(
                f"{which} prompt {i} ({prompts[i]!r}) has words this tokenizer does not know: {words} become "
                f"{tok.unk_token!r}. Check the spelling or use words of the model's vocabulary."
            )
