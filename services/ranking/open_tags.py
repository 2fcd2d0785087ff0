"""Open-ended tags for an image from the texts linked to its visual neighbours.

The approach of Yandex's visual search ("tags from similar images"): an image gets the phrases that
recur in the titles, descriptions and OCR text of the catalogue images most similar to it, each
weighted by how similar the neighbours that use it are. No fixed vocabulary: whatever the catalogue
calls things becomes a tag.

Phrases are 1-3 word n-grams that neither start nor end with an English stop word (scikit-learn's
``ENGLISH_STOP_WORDS``, the Glasgow Information Retrieval Group list), so "cup of coffee" is a phrase
and "of coffee" is not. Boilerplate (shop phrases, and phrases a large share of the catalogue carries) is
dropped, and a longer phrase replaces the shorter ones inside it when it is (nearly) as well supported.
Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

# Shop and web phrases that say nothing about what is in the picture.
BOILERPLATE: frozenset[str] = frozenset(
    {
        "free shipping",
        "free delivery",
        "fast shipping",
        "buy now",
        "shop now",
        "order now",
        "new arrival",
        "new arrivals",
        "new",
        "sale",
        "on sale",
        "hot sale",
        "best seller",
        "bestseller",
        "click here",
        "limited offer",
        "limited time",
        "special offer",
        "discount",
        "best price",
        "low price",
        "in stock",
        "out of stock",
        "add to cart",
        "free returns",
        "money back",
        "high quality",
        "top quality",
        "brand new",
        "official store",
        "wholesale",
        "dropshipping",
        "photo",
        "image",
        "picture",
        "stock",
    }
)

_SEGMENT = re.compile(r"[.!?;:,()\[\]{}|/\\\"\n\t•·–—]+")  # n-grams never cross punctuation
_TOKEN = re.compile(r"[^\W_]+(?:[-'’][^\W_]+)*")  # words (unicode letters/digits); keeps "t-shirt", "women's"


def _tokens(segment: str) -> list[str]:
    return [t.replace("’", "'") for t in _TOKEN.findall(segment.lower())]


def _is_edge_word(token: str) -> bool:
    """A token that may start or end a phrase: no stop word, no bare number, at least 2 characters."""
    return len(token) >= 2 and token not in ENGLISH_STOP_WORDS and not token.isdigit()


def boilerplate_pattern(phrases: Iterable[str]) -> re.Pattern[str] | None:
    """A regex matching any of ``phrases`` as whole words, case-insensitive, any whitespace between words
    (``None`` for no phrases). :func:`extract_phrases` cuts texts at its matches."""
    alternatives = {r"\s+".join(map(re.escape, _tokens(p))) for p in phrases if _tokens(p)}
    if not alternatives:
        return None
    # Longest first, so "free shipping" wins over a one-word entry that starts the same way.
    joined = "|".join(sorted(alternatives, key=lambda a: (-len(a), a)))
    return re.compile(r"(?<![^\W_])(?:" + joined + r")(?![^\W_])", re.IGNORECASE)


_DEFAULT_BOILERPLATE = boilerplate_pattern(BOILERPLATE)


def extract_phrases(
    text: str, max_words: int = 3, boilerplate: re.Pattern[str] | None = _DEFAULT_BOILERPLATE
) -> set[str]:
    """Candidate phrases of one text: the distinct 1..``max_words`` word n-grams, lower-cased, that do not
    cross punctuation or a ``boilerplate`` match (see :func:`boilerplate_pattern`; default
    :data:`BOILERPLATE`), and whose first and last words are not stop words, numbers or single characters.

    Example: ``"A cup of coffee. Free shipping!"`` -> ``{"cup", "coffee", "cup of coffee"}``.
    """
    text = text or ""
    if boilerplate is not None:
        text = boilerplate.sub(" | ", text)  # a segment break: no phrase spans the removed words
    phrases: set[str] = set()
    for segment in _SEGMENT.split(text):
        words = _tokens(segment)
        for n in range(1, max_words + 1):
            for i in range(len(words) - n + 1):
                if _is_edge_word(words[i]) and _is_edge_word(words[i + n - 1]):
                    phrases.add(" ".join(words[i : i + n]))
    return phrases


def _item_phrases(texts: Iterable[str], max_words: int, boilerplate: re.Pattern[str] | None) -> set[str]:
    out: set[str] = set()
    for text in texts:
        out |= extract_phrases(text, max_words, boilerplate)
    return out


def document_frequencies(
    catalogue: Iterable[Sequence[str]], max_words: int = 3, boilerplate: Iterable[str] = BOILERPLATE
) -> dict[str, float]:
    """Share of catalogue items whose linked texts contain each phrase (0..1], for ``aggregate_phrases``.

    Args:
        catalogue: one entry per catalogue item: its linked texts (title, description, OCR text...).
        max_words, boilerplate: as given to :func:`aggregate_phrases`.

    Returns:
        ``{phrase: share of items}``; an empty catalogue gives ``{}``.
    """
    pattern = _DEFAULT_BOILERPLATE if boilerplate is BOILERPLATE else boilerplate_pattern(boilerplate)
    counts: dict[str, int] = defaultdict(int)
    n_items = 0
    for texts in catalogue:
        n_items += 1
        for phrase in _item_phrases(texts, max_words, pattern):
            counts[phrase] += 1
    return {phrase: count / n_items for phrase, count in counts.items()} if n_items else {}


def aggregate_phrases(
    neighbours: Sequence[tuple[float, Sequence[str]]],
    top_n: int = 10,
    *,
    document_frequency: Mapping[str, float] | None = None,
    max_document_share: float = 0.2,
    boilerplate: Iterable[str] = BOILERPLATE,
    min_neighbours: int = 2,
    subsume_ratio: float = 0.8,
    max_words: int = 3,
) -> list[tuple[str, float]]:
    """Open-ended tags for an image from the linked texts of its nearest neighbours.

    Each neighbour's phrases (:func:`extract_phrases` over all its texts, counted once per neighbour)
    vote with the neighbour's similarity; a phrase's support is the sum of the similarities of the
    neighbours that carry it.

    Args:
        neighbours: ``(similarity, texts)`` per neighbour: cosine similarity to the query image (values
            <= 0 carry no vote) and its linked texts (title, description, OCR text...).
        top_n: most tags returned.
        document_frequency: optional ``{phrase: share of catalogue items carrying it}`` (see
            :func:`document_frequencies`); phrases carried by more than ``max_document_share`` of the
            catalogue are boilerplate (a shop name, "100% cotton" on every item) and dropped, and so are
            phrases that start or end with such a word (catalogue-specific stop words).
        boilerplate: phrases cut out of every text before phrases are extracted (whole words, any case):
            neither they nor any phrase across them ("free shipping today") nor their words on their own
            ("free", "shipping") become tags from those occurrences.
        min_neighbours: a phrase must appear in at least this many neighbours (capped at the number of
            voting neighbours, so one neighbour still gives tags): one listing's wording is not a consensus.
        subsume_ratio: a phrase is dropped in favour of a longer phrase containing it when the longer one
            has at least this share of its support (1.0: only when exactly as well supported).
        max_words: longest phrase, in words.

    Returns:
        Up to ``top_n`` ``(phrase, score)`` pairs, best first (ties: longer, then alphabetical). ``score``
        in 0..1 is the phrase's support divided by the total similarity of the voting neighbours: 1
        means every neighbour carries it. ``[]`` when no neighbour has a positive similarity.

    Raises:
        ValueError: ``top_n`` < 0, ``min_neighbours`` < 1, ``subsume_ratio`` or ``max_document_share``
            outside 0..1.
    """
    if top_n < 0 or min_neighbours < 1 or not 0 <= subsume_ratio <= 1 or not 0 <= max_document_share <= 1:
        raise ValueError("top_n >= 0, min_neighbours >= 1, 0 <= subsume_ratio <= 1, 0 <= max_document_share <= 1")
    voters = [(float(sim), texts) for sim, texts in neighbours if float(sim) > 0]
    if not voters or top_n == 0:
        return []
    total = sum(sim for sim, _ in voters)
    pattern = _DEFAULT_BOILERPLATE if boilerplate is BOILERPLATE else boilerplate_pattern(boilerplate)
    support: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for sim, texts in voters:
        for phrase in _item_phrases(texts, max_words, pattern):
            support[phrase] += sim
            count[phrase] += 1

    df = document_frequency or {}
    needed = min(min_neighbours, len(voters))

    def common(phrase: str) -> bool:
        return df.get(phrase, 0.0) > max_document_share

    # Catalogue-wide words act as stop words too: "acme store cotton" must not outlive "acme store".
    kept = {
        p: s
        for p, s in support.items()
        if count[p] >= needed and not common(p) and not common(p.split()[0]) and not common(p.split()[-1])
    }

    # Prefer a longer phrase over the shorter ones inside it when it is (nearly) as well supported:
    # "red leather handbag" on every neighbour makes "leather handbag", "handbag", "red" redundant.
    dropped: set[str] = set()
    for phrase, phrase_support in kept.items():
        words = phrase.split()
        for n in range(1, len(words)):
            for i in range(len(words) - n + 1):
                inner = " ".join(words[i : i + n])
                if inner in kept and phrase_support >= subsume_ratio * kept[inner]:
                    dropped.add(inner)
    ranked = sorted(
        ((p, s / total) for p, s in kept.items() if p not in dropped),
        key=lambda ps: (-round(ps[1], 9), -ps[0].count(" "), ps[0]),
    )
    return [(p, min(1.0, s)) for p, s in ranked[:top_n]]
