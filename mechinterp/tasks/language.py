"""Language tasks with ground truth: ``ioi``, ``facts``, ``sentiment`` and ``greater-than``.

Each task has a text-level sampler (:func:`examples`, used by training scripts to write a
corpus) and a registered generator ``fn(model, n=64, seed=0, split="test") -> Task`` that
tokenises the samples for any model. Prompts are lists of words joined by spaces, with
spaces around punctuation, so word-level zoo tokenizers split them into words and sub-word
tokenizers (GPT-2) see ordinary text.

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

Words that are not single tokens for the model are left out of the pools (names, countries
and capitals, sentiment words, years; listed in ``task.meta["dropped_words"]``); a
:class:`~mechinterp.errors.TokenizationError` naming them is raised when too few remain to
build the task (for example a tokenizer that lacks the words).

Example:
    >>> import mechinterp
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> task = mechinterp.tasks.load("ioi", model, n=8)
    >>> task.clean_prompts[0]  # doctest: +SKIP
    'When Mary and John went to the store , John gave a drink to'
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.core.tokens import check_same_lengths, tokenize
from mechinterp.errors import MechinterpError, TokenizationError
from mechinterp.tasks import vocab as V
from mechinterp.tasks.base import GroundTruth, Task, register

__all__ = ["TASKS", "Example", "examples", "full_pools", "ioi", "facts", "sentiment", "greater_than"]

TASKS = ("ioi", "facts", "sentiment", "greater-than")
SPLITS = ("train", "test")
_TEST_FRACTION = 5  # one key in five is held out for the test split


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
    return len(ids) == 1 and model.tokenizer.decode(ids).strip() == word


def _pools(task: str, model: Any) -> tuple[dict[str, list[Any]], list[str]]:
    """The pools filtered to single-token words for ``model``, and the words dropped."""
    if getattr(model, "tokenizer", None) is None:
        raise TokenizationError(f"The {task!r} task writes text prompts; this model has no tokenizer.")
    pools, dropped = full_pools(task), []
    if task == "ioi":
        ok = [x for x in pools["names"] if _single(model, x)]
        dropped, pools["names"], need = [x for x in pools["names"] if x not in ok], ok, 5
        have = len(ok)
    elif task == "facts":
        ok = [f for f in pools["facts"] if _single(model, f[0]) and _single(model, f[1])]
        dropped = [w for f in pools["facts"] if f not in ok for w in f[:2] if not _single(model, w)]
        pools["facts"], need, have = ok, 2, len(ok)
    elif task == "sentiment":
        ok = [p for p in pools["pairs"] if _single(model, p[0]) and _single(model, p[1])]
        dropped = [w for p in pools["pairs"] if p not in ok for w in p if not _single(model, w)]
        dropped += [w for w in V.SENTIMENT_LABELS if not _single(model, w)]
        pools["pairs"], need = ok, 1
        have = len(ok) if all(_single(model, w) for w in V.SENTIMENT_LABELS) else 0
    else:
        start = len(model.to_tokens(f" {V.CENTURY}01", prepend_bos=False)[0])
        ok = [
            y for y in pools["years"]
            if _single(model, f"{y:02d}", space=False)
            and len(model.to_tokens(f" {V.CENTURY}{y:02d}", prepend_bos=False)[0]) == start
        ]  # fmt: skip
        dropped = [f"{y:02d}" for y in pools["years"] if y not in ok]
        pools["years"], need, have = ok, 3, len([y for y in ok if 2 <= y <= 98])
        if not {0, 1, 99} <= set(ok):
            have = 0
    if have < need:
        raise TokenizationError(
            f"The {task!r} task needs single-token words that this tokenizer lacks: {dropped[:30]}"
            f"{' ...' if len(dropped) > 30 else ''} ({len(dropped)} in all). Use a model whose tokenizer has "
            "them, e.g. mechinterp.load('zoo:toy-lm')."
        )
    return pools, dropped


def _position(model: Any, words: list[str], index: int) -> int:
    """Token position (BOS counted) of the last token of ``words[index]`` in the prompt."""
    return len(model.to_tokens(" ".join(words[: index + 1]))[0]) - 1


def _year_fns(
    year_ids: Int[Tensor, " years"], years: Int[Tensor, " years"], yy: Int[Tensor, " batch"], answer_pos: Int[Tensor, " batch"]
) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """Greater-than's probability-difference metric and its top-1 accuracy."""

    def final(logits: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, "batch d_vocab"]:
        rows = torch.arange(logits.shape[0], device=logits.device)
        return logits[rows, answer_pos.to(logits.device)]

    def metric(logits: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, " batch"]:
        probs = final(logits).softmax(-1)[:, year_ids.to(logits.device)]  # [batch, years]
        above = years.to(logits.device)[None, :] > yy.to(logits.device)[:, None]  # [batch, years]
        return (probs * above).sum(-1) - (probs * ~above).sum(-1)

    def accuracy(logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        top = final(logits).argmax(-1)  # [batch]
        hit = top[:, None] == year_ids.to(logits.device)[None, :]  # [batch, years]
        above = years.to(logits.device)[None, :] > yy.to(logits.device)[:, None]
        return (hit & above).any(-1)

    return metric, accuracy


def build(task: str, model: Any, n: int = 64, seed: int = 0, split: str = "test") -> Task:
    """Sample ``n`` prompts of ``task`` and tokenise them for ``model`` (see module docstring)."""
    if n < 1:
        raise MechinterpError(f"n must be at least 1 (got {n}).")
    pools, dropped = _pools(task, model)
    exs = examples(task, n, seed, split, pools)
    clean = tokenize(model, [" ".join(e.clean) for e in exs])
    corrupted = tokenize(model, [" ".join(e.corrupted) for e in exs])
    check_same_lengths(clean, corrupted)
    space = task != "greater-than"  # two-digit years follow "17" with no space
    token = lambda s: model.to_single_token((" " if space else "") + s)  # noqa: E731
    labels = {k: [e.labels[k] for e in exs] for k in exs[0].labels}
    metric_fn = accuracy_fn = None
    if task == "greater-than":
        years = torch.tensor(pools["years"])
        year_ids = torch.tensor([token(f"{y:02d}") for y in pools["years"]])
        metric_fn, accuracy_fn = _year_fns(year_ids, years, torch.tensor(labels["yy"]), clean.lengths - 1)
    return Task(
        name=task,
        clean_prompts=[" ".join(e.clean) for e in exs],
        corrupted_prompts=[" ".join(e.corrupted) for e in exs],
        clean_tokens=clean.tokens,
        corrupted_tokens=corrupted.tokens,
        lengths=clean.lengths,
        correct_answers=[e.correct for e in exs],
        wrong_answers=[e.wrong for e in exs],
        correct_tokens=torch.tensor([token(e.correct) for e in exs]),
        wrong_tokens=torch.tensor([token(e.wrong) for e in exs]),
        ground_truth=GroundTruth(
            positions=[[_position(model, e.clean, i) for i in e.key_words] for e in exs], labels=labels
        ),
        metric_fn=metric_fn,
        accuracy_fn=accuracy_fn,
        meta={"split": split, "seed": seed, "dropped_words": dropped},
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
