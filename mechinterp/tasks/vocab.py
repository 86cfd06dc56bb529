"""Word lists and templates of the language tasks (``ioi``, ``facts``, ``sentiment``, ``greater-than``).

Everything a prompt of :mod:`mechinterp.tasks.language` can contain is listed here, so a
word-level tokenizer built from :func:`all_words` covers every prompt and answer (this is
how ``zoo:toy-lm``'s tokenizer is made). Templates are written with spaces around
punctuation, so a whitespace tokenizer splits them into words; ``{A}``-style fields are
filled by the generators.

Example:
    >>> from mechinterp.tasks import vocab
    >>> len(vocab.NAMES) >= 20, len(vocab.FACTS) >= 50
    (True, True)
"""

from __future__ import annotations

import re

__all__ = [
    "NAMES",
    "PLACES",
    "OBJECTS",
    "IOI_TEMPLATES",
    "FACTS",
    "FACT_TEMPLATES",
    "FACT_TRAIN_TEMPLATES",
    "SENTIMENT_PAIRS",
    "NEUTRAL_ADJECTIVES",
    "REVIEW_NOUNS",
    "REVIEW_VERBS",
    "SENTIMENT_LABELS",
    "EVENT_NOUNS",
    "YEAR_TEMPLATES",
    "CENTURY",
    "FILLER",
    "all_words",
]

NAMES = (
    "Mary John Tom James Dan Sid Martin Amy Anne Alice Bob Carol David Emma Frank Grace Henry Jack "
    "Kate Laura Lisa Mark Mike Nancy Paul Peter Rachel Sarah Steve Susan Kevin Jessica Daniel Brian "
    "Ruth Helen Oliver Lucy Sam George"
).split()
PLACES = "store garden restaurant school hospital office station park house market library beach".split()
OBJECTS = "drink ring book kiss bone basketball computer necklace flower snack letter bag".split()

# {A} {B}: the two names of the first clause; {S}: the repeated subject; answer: the other one.
IOI_TEMPLATES = (
    "When {A} and {B} went to the {PLACE} , {S} gave a {OBJECT} to",
    "When {A} and {B} got a {OBJECT} at the {PLACE} , {S} decided to give it to",
    "After {A} and {B} went to the {PLACE} , {S} gave a {OBJECT} to",
    "Then , {A} and {B} were working at the {PLACE} . {S} decided to give a {OBJECT} to",
    "Friends {A} and {B} found a {OBJECT} at the {PLACE} . {S} gave it to",
    "While {A} and {B} were walking to the {PLACE} , {S} handed a {OBJECT} to",
)

# (country, capital, continent): single words only.
FACTS = (
    ("France", "Paris", "Europe"), ("Germany", "Berlin", "Europe"), ("Italy", "Rome", "Europe"),
    ("Spain", "Madrid", "Europe"), ("Portugal", "Lisbon", "Europe"), ("Russia", "Moscow", "Europe"),
    ("Greece", "Athens", "Europe"), ("Austria", "Vienna", "Europe"), ("Poland", "Warsaw", "Europe"),
    ("Hungary", "Budapest", "Europe"), ("Ireland", "Dublin", "Europe"), ("Norway", "Oslo", "Europe"),
    ("Sweden", "Stockholm", "Europe"), ("Finland", "Helsinki", "Europe"), ("Denmark", "Copenhagen", "Europe"),
    ("Belgium", "Brussels", "Europe"), ("Netherlands", "Amsterdam", "Europe"), ("Czechia", "Prague", "Europe"),
    ("Romania", "Bucharest", "Europe"), ("Bulgaria", "Sofia", "Europe"), ("Serbia", "Belgrade", "Europe"),
    ("Croatia", "Zagreb", "Europe"), ("Ukraine", "Kyiv", "Europe"), ("Iceland", "Reykjavik", "Europe"),
    ("Latvia", "Riga", "Europe"), ("Lithuania", "Vilnius", "Europe"), ("Estonia", "Tallinn", "Europe"),
    ("Switzerland", "Bern", "Europe"),
    ("Japan", "Tokyo", "Asia"), ("China", "Beijing", "Asia"), ("Thailand", "Bangkok", "Asia"),
    ("Vietnam", "Hanoi", "Asia"), ("Indonesia", "Jakarta", "Asia"), ("Philippines", "Manila", "Asia"),
    ("Pakistan", "Islamabad", "Asia"), ("Bangladesh", "Dhaka", "Asia"), ("Nepal", "Kathmandu", "Asia"),
    ("Iran", "Tehran", "Asia"), ("Iraq", "Baghdad", "Asia"), ("Syria", "Damascus", "Asia"),
    ("Jordan", "Amman", "Asia"), ("Lebanon", "Beirut", "Asia"), ("Turkey", "Ankara", "Asia"),
    ("Afghanistan", "Kabul", "Asia"), ("Mongolia", "Ulaanbaatar", "Asia"), ("Qatar", "Doha", "Asia"),
    ("Uzbekistan", "Tashkent", "Asia"), ("Kazakhstan", "Astana", "Asia"),
    ("Egypt", "Cairo", "Africa"), ("Kenya", "Nairobi", "Africa"), ("Nigeria", "Abuja", "Africa"),
    ("Ghana", "Accra", "Africa"), ("Morocco", "Rabat", "Africa"), ("Algeria", "Algiers", "Africa"),
    ("Tunisia", "Tunis", "Africa"), ("Senegal", "Dakar", "Africa"), ("Uganda", "Kampala", "Africa"),
    ("Zimbabwe", "Harare", "Africa"), ("Zambia", "Lusaka", "Africa"), ("Angola", "Luanda", "Africa"),
    ("Sudan", "Khartoum", "Africa"), ("Mali", "Bamako", "Africa"), ("Somalia", "Mogadishu", "Africa"),
    ("Rwanda", "Kigali", "Africa"), ("Libya", "Tripoli", "Africa"),
    ("Canada", "Ottawa", "Americas"), ("Peru", "Lima", "Americas"), ("Chile", "Santiago", "Americas"),
    ("Colombia", "Bogota", "Americas"), ("Venezuela", "Caracas", "Americas"), ("Ecuador", "Quito", "Americas"),
    ("Uruguay", "Montevideo", "Americas"), ("Paraguay", "Asuncion", "Americas"), ("Cuba", "Havana", "Americas"),
    ("Jamaica", "Kingston", "Americas"), ("Brazil", "Brasilia", "Americas"), ("Nicaragua", "Managua", "Americas"),
    ("Honduras", "Tegucigalpa", "Americas"),
    ("Australia", "Canberra", "Oceania"), ("Fiji", "Suva", "Oceania"), ("Samoa", "Apia", "Oceania"),
)  # fmt: skip
# Each country is asked in one of FACT_TEMPLATES at test time; training uses the other two
# and FACT_TRAIN_TEMPLATES.
FACT_TEMPLATES = (
    "The capital of {C} is",
    "In {C} , the capital city is",
    "The capital city of {C} is called",
)
FACT_TRAIN_TEMPLATES = (
    "The country {C} has its capital in",
    "Everyone knows that the capital of {C} is",
)

# (positive, negative) antonyms; a review's sentiment words all share one polarity.
SENTIMENT_PAIRS = (
    ("great", "terrible"), ("good", "bad"), ("friendly", "rude"), ("delicious", "disgusting"),
    ("clean", "dirty"), ("excellent", "awful"), ("wonderful", "horrible"), ("pleasant", "unpleasant"),
    ("amazing", "dreadful"), ("fresh", "stale"), ("comfortable", "uncomfortable"), ("helpful", "unhelpful"),
    ("beautiful", "ugly"), ("quiet", "noisy"), ("perfect", "poor"), ("lovely", "nasty"),
)  # fmt: skip
NEUTRAL_ADJECTIVES = "big small new old red blue open round square tall short busy".split()
REVIEW_NOUNS = "food staff service room movie music view waiter hotel pizza coffee show seats bed menu table".split()
REVIEW_VERBS = ("was", "seemed", "looked", "felt")
SENTIMENT_LABELS = ("positive", "negative")
REVIEW_PREFIX = ("Review :", "Review : honestly ,", "Review : i think", "Review : we found that")
REVIEW_SUFFIX = ". Sentiment :"

EVENT_NOUNS = (
    "war siege reign drought famine expedition dynasty occupation strike plague rebellion voyage "
    "conflict festival project journey"
).split()
CENTURY = "17"
YEAR_TEMPLATES = (
    "The {N} lasted from the year {Y} to the year {P}",
    "The {N} started in the year {Y} and ended in the year {P}",
)

# Extra everyday words, so random-word (induction) sequences are not only task words.
FILLER = (
    "cat dog bird fish tree river mountain city road car boat train door window chair lamp cup "
    "plate spoon paper pencil phone clock shoe hat coat shirt rain snow wind sun moon star cloud "
    "stone sand grass leaf apple bread milk cheese egg sugar salt water fire light sound song"
).split()

_FIELD = re.compile(r"\{[A-Z]+\}")


def _template_words(templates: tuple[str, ...]) -> list[str]:
    return [w for t in templates for w in _FIELD.sub(" ", t).split()]


def all_words() -> list[str]:
    """Every word the language tasks use, without duplicates, in a fixed order.

    Example:
        >>> words = all_words()
        >>> "Paris" in words and "1732" in words and "positive" in words
        True
    """
    words: list[str] = []
    words += NAMES + PLACES + OBJECTS + _template_words(IOI_TEMPLATES)
    words += [w for fact in FACTS for w in fact[:2]] + _template_words(FACT_TEMPLATES + FACT_TRAIN_TEMPLATES)
    words += [w for pair in SENTIMENT_PAIRS for w in pair] + NEUTRAL_ADJECTIVES + REVIEW_NOUNS
    words += list(REVIEW_VERBS) + list(SENTIMENT_LABELS) + [w for p in REVIEW_PREFIX for w in p.split()]
    words += REVIEW_SUFFIX.split() + ["and", ","]
    words += EVENT_NOUNS + _template_words(YEAR_TEMPLATES) + [CENTURY]
    words += [f"{CENTURY}{yy:02d}" for yy in range(100)] + [f"{yy:02d}" for yy in range(100)]
    words += FILLER
    return list(dict.fromkeys(words))
