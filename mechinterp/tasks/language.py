"""Language tasks with ground truth: ``ioi``, ``facts``, ``sentiment`` and ``greater-than``.

Each task has a text-level sampler (:func:`examples`, used by training scripts to write a
corpus) and a registered generator ``fn(model, n=64, seed=0, split="test") -> Task`` that
writes the samples as text for the model's tokenizer and tokenises them
(:mod:`mechinterp.tasks.text`): for a word-level zoo tokenizer words are joined by spaces,
with spaces around punctuation (``"went to the school , John"``, the zoo models' training
text); for a sub-word tokenizer (BPE, SentencePiece) as ordinary text
(``"went to the school, John"``) with answers carrying their leading space (``" Mary"``).
BOS is prepended only where the model does (``model.cfg.default_prepend_bos``), and every
ground-truth position counts it.

* **ioi** (Wang et al. 2022): ``When Mary and John went to the store , John gave a drink
  to`` → ``Mary``. Corrupted: the "ABC" distribution, the three name slots filled with three
  other names. Wrong answer: the subject. Ground truth: the positions of the indirect object
  (first occurrence) and of the repeated subject (S2). Held out: unordered name pairs.
* **facts**: ``The capital of France is`` → ``Paris`` (81 countries). Corrupted: another
  country; wrong answer its capital. Ground truth: the country position. Held out: each
  country is asked in one of three templates at test time (fixed by a hash of its name) and
  in the two others plus two training-only templates at training time, so a test prompt
  is never a training prompt: the fact is memorised, the template is new for that country.
* **sentiment**: ``Review : the food was great and the room was old . Sentiment :`` →
  ``positive``. Clauses with sentiment words (one polarity per review) among neutral ones.
  Corrupted: every sentiment word flipped to its antonym; wrong answer the other label.
  Ground truth: the sentiment words' positions. Held out: whole reviews (by a hash of the
  text), so test reviews are new combinations of the same words.
* **greater-than** (Hanna et al. 2023): ``The war lasted from the year 1732 to the year 17``
  → a two-digit year above 32. Corrupted: start year ``1701``. ``metric_fn`` is the
  probability on years > YY minus the probability on years ≤ YY (over the 100 two-digit
  tokens ``00``–``99``), measured against the clean YY for clean and corrupted logits
  alike; ``accuracy_fn`` asks for a top-1 token that is a year > YY. The single
  ``correct_tokens``/``wrong_tokens`` (for logit-difference methods) are YY+1 and YY−1.
  Ground truth: the start-year position (its last token). Held out: (event, YY) pairs.

``split="train"`` and ``split="test"`` draw from disjoint prompt sets (see "Held out") with
different random streams; the same ``(n, seed, split)`` always gives the same task.

Words that are not single tokens for the model (after a space) are left out of the pools
(names, countries and capitals, sentiment words, years; listed in
``task.meta["dropped_words"]``, with a sentence per pool in ``task.meta["filtered"]``); a
:class:`~mechinterp.errors.TokenizationError` naming them is raised when too few remain to
build the task. Sampled pairs whose clean and corrupted prompts still tokenise to different
lengths are skipped (``task.meta["dropped_pairs"]``). A tokenizer that writes numbers digit
by digit (Llama, SmolLM2) gets greater-than in *digit mode* (``task.meta["year_mode"]``):
start years 17Y9, the answer is the tens digit of the end year (one token), and the metric
and accuracy are taken over the digits ``0``–``9`` (a tens digit above Y is a later year).

Example:
    >>> import mechinterp
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> task = mechinterp.tasks.load("ioi", model, n=8)
    >>> task.clean_prompts[0]  # doctest: +SKIP
    'When Mary and John went to the store , John gave a drink to'
"""

from __future__ import annotations

import dataclasses
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.core.tokens import answer_tokens, check_same_lengths, tokenize, tokenizer_kind
from mechinterp.errors import MechinterpError, TokenizationError
from mechinterp.tasks import vocab as V
from mechinterp.tasks.base import GroundTruth, Task, register
from mechinterp.tasks.text import render, word_positions

__all__ = ["TASKS", "Example", "examples", "full_pools", "ioi", "facts", "sentiment", "greater_than"]

TASKS = ("ioi", "facts", "sentiment", "greater-than")
SPLITS = ("train", "test")
_TEST_FRACTION = 5  # one key in five is held out for the test split
DIGIT_YEARS = (19, 29, 39, 49, 59, 69, 79, 89)  # greater-than start years for digit-by-digit tokenizers


@dataclass(frozen=True)
class Example:
    """One prompt of a language task, as words.

    Attributes:
        clean / corrupted: the prompt words (same count; corrupted differs in slot words).
        answer: the continuation a training corpus uses (for greater-than a random later
            year; otherwise the correct answer).
        correct / wrong: the answer strings a :class:`Task` scores (no leading space).
        key_words: word indices whose token positions are the ground truth.
        labels: concept labels of this prompt.
    """

    clean: list[str]
    corrupted: list[str]
    answer: str
    correct: str
    wrong: str
    key_words: list[int]
    labels: dict[str, Any] = field(default_factory=dict)


def _held_out(key: str) -> bool:
    return zlib.crc32(key.encode()) % _TEST_FRACTION == 0


def _fill(template: str, slots: dict[str, str]) -> tuple[list[str], dict[str, int]]:
    """Split ``template`` into words, fill ``{X}`` fields; also return each field's index."""
    words, where = [], {}
    for i, w in enumerate(template.split()):
        if w.startswith("{") and w.endswith("}"):
            where[w[1:-1]] = i
            w = slots[w[1:-1]]
        words.append(w)
    return words, where


def _until(rng: random.Random, split: str, draw: Callable[[], tuple[str, Any]]) -> Any:
    """Redraw until the drawn key falls in ``split`` (keys are held out by hash)."""
    for _ in range(10_000):
        key, value = draw()
        if _held_out(key) == (split == "test"):
            return value
    raise MechinterpError(
        f"No {split!r} prompt found in 10,000 draws: the vocabulary is too small for this split. "
        "Use a model whose tokenizer has more of the task's words."
    )


# --- samplers: (rng, split, pools) -> Example ----------------------------------------------


def _ioi(rng: random.Random, split: str, pools: dict[str, list[Any]]) -> Example:
    names = pools["names"]
    io, s = _until(rng, split, lambda: (lambda p: ("|".join(sorted(p)), p))(rng.sample(names, 2)))
    template, place, obj = rng.choice(V.IOI_TEMPLATES), rng.choice(V.PLACES), rng.choice(V.OBJECTS)
    subject_first = rng.random() < 0.5  # BABA; else ABBA
    a, b = (s, io) if subject_first else (io, s)
    c, d, e = rng.sample([x for x in names if x not in (io, s)], 3)
    clean, where = _fill(template, {"A": a, "B": b, "S": s, "PLACE": place, "OBJECT": obj})
    corrupted, _ = _fill(template, {"A": c, "B": d, "S": e, "PLACE": place, "OBJECT": obj})
    io_word = where["B"] if subject_first else where["A"]
    labels = {"io_name": io, "s_name": s, "subject_first": subject_first}
    return Example(clean, corrupted, io, io, s, [io_word, where["S"]], labels)


def _facts(rng: random.Random, split: str, pools: dict[str, list[Any]]) -> Example:
    facts = pools["facts"]
    i = rng.randrange(len(facts))
    country, capital, continent = facts[i]
    templates = V.FACT_TEMPLATES + V.FACT_TRAIN_TEMPLATES
    test_template = zlib.crc32(country.encode()) % len(V.FACT_TEMPLATES)
    if split == "test":
        t = test_template
    else:
        t = rng.choice([k for k in range(len(templates)) if k != test_template])
    other, other_capital, _ = facts[rng.choice([k for k in range(len(facts)) if k != i])]
    clean, where = _fill(templates[t], {"C": country})
    corrupted, _ = _fill(templates[t], {"C": other})
    labels = {"country": country, "continent": continent, "template": t}  # t >= 3: training-only
    return Example(clean, corrupted, capital, capital, other_capital, [where["C"]], labels)


def _review(rng: random.Random, pairs: list[tuple[str, str]]) -> tuple[list[str], list[str], list[int], int]:
    polarity = rng.randrange(2)  # 0: positive, 1: negative
    n_clauses = rng.randint(1, 3)
    sentiment = set(rng.sample(range(n_clauses), rng.randint(1, n_clauses)))
    clean = rng.choice(V.REVIEW_PREFIX).split()
    corrupted, keys = list(clean), []
    for j, noun in enumerate(rng.sample(V.REVIEW_NOUNS, n_clauses)):
        if j:
            sep = "and" if j == n_clauses - 1 else ","
            clean.append(sep), corrupted.append(sep)
        head = ["the", noun, rng.choice(V.REVIEW_VERBS)]
        clean += head
        corrupted += head
        if j in sentiment:
            pair = rng.choice(pairs)
            keys.append(len(clean))
            clean.append(pair[polarity]), corrupted.append(pair[1 - polarity])
        else:
            adj = rng.choice(V.NEUTRAL_ADJECTIVES)
            clean.append(adj), corrupted.append(adj)
    tail = V.REVIEW_SUFFIX.split()
    return clean + tail, corrupted + tail, keys, polarity


def _sentiment(rng: random.Random, split: str, pools: dict[str, list[Any]]) -> Example:
    clean, corrupted, keys, polarity = _until(
        rng, split, lambda: (lambda r: (" ".join(r[0]), r))(_review(rng, pools["pairs"]))
    )
    label, other = V.SENTIMENT_LABELS[polarity], V.SENTIMENT_LABELS[1 - polarity]
    labels = {"polarity": label, "sentiment": 1 - polarity}
    return Example(clean, corrupted, label, label, other, keys, labels)


def _greater_than(rng: random.Random, split: str, pools: dict[str, list[Any]]) -> Example:
    low = 1 if split == "train" else 2  # YY = 01 is the corruption; trained, never tested
    years = [y for y in pools["years"] if low <= y <= 98]
    noun, yy = _until(rng, split, lambda: (lambda p: (f"{p[0]}|{p[1]}", p))((rng.choice(V.EVENT_NOUNS), rng.choice(years))))
    template = rng.choice(V.YEAR_TEMPLATES)
    clean, where = _fill(template, {"N": noun, "Y": f"{V.CENTURY}{yy:02d}", "P": V.CENTURY})
    corrupted, _ = _fill(template, {"N": noun, "Y": f"{V.CENTURY}01", "P": V.CENTURY})
    end = yy + rng.randint(1, min(20, 99 - yy))
    return Example(clean, corrupted, f"{end:02d}", f"{yy + 1:02d}", f"{yy - 1:02d}", [where["Y"]], {"yy": yy})


_SAMPLERS: dict[str, Callable[[random.Random, str, dict[str, list[Any]]], Example]] = {
    "ioi": _ioi,
    "facts": _facts,
    "sentiment": _sentiment,
    "greater-than": _greater_than,
}


def full_pools(task: str) -> dict[str, list[Any]]:
    """The unfiltered word pools of ``task`` (what a tokenizer built from the vocabulary has)."""
    return {
        "ioi": {"names": list(V.NAMES)},
        "facts": {"facts": list(V.FACTS)},
        "sentiment": {"pairs": list(V.SENTIMENT_PAIRS)},
        "greater-than": {"years": list(range(100))},
    }[task]


def examples(
    task: str, n: int, seed: int = 0, split: str = "train", pools: dict[str, list[Any]] | None = None
) -> list[Example]:
    """``n`` text examples of ``task`` from ``split``, deterministic in ``seed``.

    Example:
        >>> ex = examples("facts", 1, seed=0, split="test")[0]
        >>> " ".join(ex.clean), ex.correct  # doctest: +SKIP
        ('The capital of Peru is', 'Lima')
    """
    if task not in _SAMPLERS:
        raise MechinterpError(f"Unknown language task {task!r}; valid: {list(TASKS)}.")
    if split not in SPLITS:
        raise MechinterpError(f"split must be 'train' or 'test' (got {split!r}).")
    rng = random.Random(f"{task}/{split}/{seed}")
    pools = pools if pools is not None else full_pools(task)
    return [_SAMPLERS[task](rng, split, pools) for _ in range(n)]


# --- tokenisation for a model --------------------------------------------------------------


def _single(model: Any, word: str, space: bool = True) -> bool:
    """Whether ``word`` (after a space, unless ``space=False``) is one known token."""
    ids = model.to_tokens((" " if space else "") + word, prepend_bos=False)[0]
    if len(ids) != 1 or model.tokenizer.decode(ids).strip() != word:
        return False
    unk = getattr(model.tokenizer, "unk_token_id", None)
    return unk is None or int(ids[0]) != unk


def _two_digit_years(model: Any) -> list[int]:
    """Years YY whose two digits are one token after ``"17"`` and keep ``" 17YY"``'s length."""
    start = len(model.to_tokens(f" {V.CENTURY}01", prepend_bos=False)[0])
    return [
        y for y in range(100)
        if _single(model, f"{y:02d}", space=False)
        and len(model.to_tokens(f" {V.CENTURY}{y:02d}", prepend_bos=False)[0]) == start
    ]  # fmt: skip


def _pools(task: str, model: Any) -> tuple[dict[str, list[Any]], list[str], list[str], str]:
    """The pools filtered to single-token words for ``model``.

    Returns:
        ``(pools, dropped words, notes saying what was filtered and why, mode)``; ``mode``
        is ``"words"``, or for greater-than ``"two-digit"`` (``"32"`` is one token) or
        ``"digits"`` (a tokenizer that splits numbers into single digits).
    """
    if getattr(model, "tokenizer", None) is None:
        raise TokenizationError(f"The {task!r} task writes text prompts; this model has no tokenizer.")
    pools, dropped, notes, mode = full_pools(task), [], [], "words"
    why = "not one token after a space for this tokenizer (or unknown to it)"
    if task == "ioi":
        ok = [x for x in pools["names"] if _single(model, x)]
        dropped, pools["names"], need = [x for x in pools["names"] if x not in ok], ok, 5
        have = len(ok)
        notes.append(f"{len(ok)} of {len(V.NAMES)} names kept" + (f"; dropped {dropped}: {why}" if dropped else ""))
    elif task == "facts":
        ok = [f for f in pools["facts"] if _single(model, f[0]) and _single(model, f[1])]
        dropped = [w for f in pools["facts"] if f not in ok for w in f[:2] if not _single(model, w)]
        pools["facts"], need, have = ok, 2, len(ok)
        lost = [f[0] for f in V.FACTS if f not in ok]
        notes.append(f"{len(ok)} of {len(V.FACTS)} countries kept" + (
            f"; dropped {lost}, because {dropped} are {why}" if lost else ""))
    elif task == "sentiment":
        ok = [p for p in pools["pairs"] if _single(model, p[0]) and _single(model, p[1])]
        dropped = [w for p in pools["pairs"] if p not in ok for w in p if not _single(model, w)]
        dropped += [w for w in V.SENTIMENT_LABELS if not _single(model, w)]
        pools["pairs"], need = ok, 1
        have = len(ok) if all(_single(model, w) for w in V.SENTIMENT_LABELS) else 0
        notes.append(f"{len(ok)} of {len(V.SENTIMENT_PAIRS)} antonym pairs kept" + (
            f"; dropped words {dropped}: {why}" if dropped else ""))
    else:
        ok = _two_digit_years(model)
        dropped = [f"{y:02d}" for y in pools["years"] if y not in ok]
        pools["years"], need, have, mode = ok, 3, len([y for y in ok if 2 <= y <= 98]), "two-digit"
        if not {0, 1, 99} <= set(ok):
            have = 0
        digits = all(_single(model, str(d), space=False) for d in range(10))
        same = len(model.to_tokens(f" {V.CENTURY}01", prepend_bos=False)[0]) == len(
            model.to_tokens(f" {V.CENTURY}59", prepend_bos=False)[0]
        )
        if have < need and digits and same:
            mode, dropped, have = "digits", [], need
            pools["years"] = list(DIGIT_YEARS)
            notes.append(
                "two-digit years are not single tokens for this tokenizer (it writes numbers digit by digit): "
                f"the answer is the tens digit of the end year, and start years are {list(DIGIT_YEARS)} "
                "(ending in 9, so the tens digit alone decides 'later than the start')"
            )
        else:
            notes.append(f"{len(ok)} of 100 two-digit years kept" + (
                f"; dropped {dropped}: not one token after '17'" if dropped else ""))
    if have < need:
        raise TokenizationError(
            f"The {task!r} task needs single-token words that this tokenizer lacks: {dropped[:30]}"
            f"{' ...' if len(dropped) > 30 else ''} ({len(dropped)} in all). Use a model whose tokenizer has "
            "them, e.g. mechinterp.load('zoo:toy-lm'), or build your own task with mechinterp.tasks.from_pairs."
        )
    return pools, dropped, notes, mode


@dataclass(frozen=True)
class YearMetric:
    """Greater-than's metric (or, with ``top1=True``, its per-prompt correctness).

    The metric is P(value > threshold) − P(value ≤ threshold) over the value tokens at
    each prompt's answer position; correctness asks for a top-1 token that is a value above
    the threshold. Values are the two-digit years ``00``–``99`` (threshold YY) or, for a
    tokenizer that writes digits one by one, the digits ``0``–``9`` (threshold: the tens
    digit of YY). :meth:`subset` keeps the rows a :meth:`Task.subset` selects.
    """

    value_ids: Int[Tensor, " values"]
    values: Int[Tensor, " values"]
    threshold: Int[Tensor, " batch"]
    answer_pos: Int[Tensor, " batch"]
    top1: bool = False

    def __call__(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        rows = torch.arange(logits.shape[0], device=logits.device)
        final = logits[rows, self.answer_pos.to(logits.device)]  # [batch, d_vocab]
        ids = self.value_ids.to(logits.device)
        above = self.values.to(logits.device)[None, :] > self.threshold.to(logits.device)[:, None]  # [batch, values]
        if self.top1:
            hit = final.argmax(-1)[:, None] == ids[None, :]  # [batch, values]
            return (hit & above).any(-1)
        probs = final.float().softmax(-1)[:, ids]  # [batch, values]
        return ((probs * above).sum(-1) - (probs * ~above).sum(-1)).to(logits.dtype)

    def subset(self, rows: Int[Tensor, " k"]) -> YearMetric:
        return dataclasses.replace(self, threshold=self.threshold[rows], answer_pos=self.answer_pos[rows])


def _prepare(model: Any, ex: Example, kind: str, mode: str) -> tuple[str, str, list[int]] | None:
    """``(clean text, corrupted text, ground-truth positions)``, or ``None`` for a pair whose
    clean and corrupted texts differ in token count or whose key words have no position."""
    clean, corrupted = render(ex.clean, kind), render(ex.corrupted, kind)
    if len(model.to_tokens(clean, truncate=False)[0]) != len(model.to_tokens(corrupted, truncate=False)[0]):
        return None
    positions = word_positions(model, ex.clean, ex.key_words, kind)
    if positions is None:
        return None
    if mode == "digits":  # the start year's tens digit (its units digit is always 9)
        positions = [p - 1 for p in positions]
    return clean, corrupted, positions


def build(task: str, model: Any, n: int = 64, seed: int = 0, split: str = "test") -> Task:
    """Sample ``n`` prompts of ``task`` and tokenise them for ``model`` (see module docstring).

    Sampled pairs whose clean and corrupted prompts tokenise to different lengths (or
    whose ground-truth words merge with a neighbour) are skipped and more are drawn; the
    count is ``task.meta["dropped_pairs"]``. Zoo tokenizers never skip, so zoo tasks are
    the first ``n`` samples.
    """
    if n < 1:
        raise MechinterpError(f"n must be at least 1 (got {n}).")
    kind = tokenizer_kind(model)
    pools, dropped, notes, mode = _pools(task, model)
    exs, kept, skipped, m = [], [], 0, n
    while len(kept) < n and m <= 16 * n:
        new = examples(task, m, seed, split, pools)[len(exs) :]  # examples(m) starts with examples(m') for m' < m
        exs += new
        for ex in new:
            if len(kept) == n:
                break
            ready = _prepare(model, ex, kind, mode)
            if ready is None:
                skipped += 1
            else:
                kept.append((ex, *ready))
        m *= 2
    if len(kept) < n:
        raise TokenizationError(
            f"Only {len(kept)} of {len(exs)} sampled {task!r} pairs have clean and corrupted prompts of the same "
            f"token length for this tokenizer; lower n (got {n}) or build a task with mechinterp.tasks.from_pairs."
        )
    if skipped:
        notes.append(f"{skipped} sampled pairs skipped: clean and corrupted token counts differ, or a key word merges "
                     "with its neighbour")
    exs = [k[0] for k in kept]
    clean = tokenize(model, [k[1] for k in kept])
    corrupted = tokenize(model, [k[2] for k in kept])
    check_same_lengths(clean, corrupted)
    labels = {k: [e.labels[k] for e in exs] for k in exs[0].labels}
    if mode == "digits":
        correct = [str(e.labels["yy"] // 10 + 1) for e in exs]
        wrong = [str(e.labels["yy"] // 10) for e in exs]
    else:
        space = " " if kind == "subword" and task != "greater-than" else ""  # years follow "17" with no space
        correct, wrong = [space + e.correct for e in exs], [space + e.wrong for e in exs]
    metric_fn = accuracy_fn = None
    if task == "greater-than":
        values = list(range(10)) if mode == "digits" else pools["years"]
        fmt = "{}" if mode == "digits" else "{:02d}"
        value_ids = answer_tokens(model, [fmt.format(v) for v in values])
        yy = torch.tensor(labels["yy"])
        threshold = yy // 10 if mode == "digits" else yy
        metric_fn = YearMetric(value_ids, torch.tensor(values), threshold, clean.lengths - 1)
        accuracy_fn = dataclasses.replace(metric_fn, top1=True)
    meta = {
        "split": split, "seed": seed, "dropped_words": dropped, "dropped_pairs": skipped, "filtered": notes,
        "tokenizer_kind": kind, "prepend_bos": bool(model.cfg.default_prepend_bos),
    }  # fmt: skip
    if task == "greater-than":
        meta["year_mode"] = mode
    return Task(
        name=task,
        clean_prompts=[k[1] for k in kept],
        corrupted_prompts=[k[2] for k in kept],
        clean_tokens=clean.tokens,
        corrupted_tokens=corrupted.tokens,
        lengths=clean.lengths,
        correct_answers=correct,
        wrong_answers=wrong,
        correct_tokens=answer_tokens(model, correct),
        wrong_tokens=answer_tokens(model, wrong),
        ground_truth=GroundTruth(positions=[k[3] for k in kept], labels=labels),
        metric_fn=metric_fn,
        accuracy_fn=accuracy_fn,
        meta=meta,
    )


@register("ioi")
def ioi(model: Any, n: int = 64, seed: int = 0, split: str = "test") -> Task:
    """Indirect-object identification prompts (ABBA and BABA), corrupted to ABC.

    Ground truth: ``positions[i] = [IO first occurrence, S2]``; labels ``io_name``,
    ``s_name``, ``subject_first`` (True for BABA). Test prompts use name pairs never
    seen together in training.

    Example:
        >>> task = ioi(mechinterp.load("zoo:toy-lm"), n=16)  # doctest: +SKIP
        >>> task.correct_answers[0] in task.clean_prompts[0]  # doctest: +SKIP
        True
    """
    return build("ioi", model, n, seed, split)


@register("facts")
def facts(model: Any, n: int = 64, seed: int = 0, split: str = "test") -> Task:
    """Country → capital prompts; corrupted with another country (wrong answer: its capital).

    Ground truth: ``positions[i] = [country]``; labels ``country``, ``continent``,
    ``template``. Test prompts ask each fact in a template that training never used for
    that country.

    Example:
        >>> task = facts(mechinterp.load("zoo:toy-lm"), n=16)  # doctest: +SKIP
        >>> task.clean_prompts[0], task.correct_answers[0]  # doctest: +SKIP
        ('The capital of Peru is', 'Lima')
    """
    return build("facts", model, n, seed, split)


@register("sentiment")
def sentiment(model: Any, n: int = 64, seed: int = 0, split: str = "test") -> Task:
    """Short reviews labelled ``positive``/``negative``; corrupted by antonyms.

    Ground truth: ``positions[i]`` = the sentiment words; labels ``polarity``
    (``"positive"``/``"negative"``) and ``sentiment`` (1/0).

    Example:
        >>> task = sentiment(mechinterp.load("zoo:toy-lm"), n=16)  # doctest: +SKIP
        >>> task.correct_answers[0] in ("positive", "negative")  # doctest: +SKIP
        True
    """
    return build("sentiment", model, n, seed, split)


@register("greater-than")
def greater_than(model: Any, n: int = 64, seed: int = 0, split: str = "test") -> Task:
    """``from the year 17YY to the year 17`` → a year above YY; corrupted to ``1701``.

    ``task.metric`` is P(year > YY) − P(year ≤ YY); ``task.accuracy`` counts a top-1
    year > YY. ``correct_tokens``/``wrong_tokens`` are YY+1 / YY−1. Ground truth:
    ``positions[i] = [start year]``; label ``yy``.

    Example:
        >>> task = greater_than(mechinterp.load("zoo:toy-lm"), n=16)  # doctest: +SKIP
        >>> task.metric(model(task.clean_tokens)).mean() > 0  # doctest: +SKIP
        tensor(True)
    """
    return build("greater-than", model, n, seed, split)
