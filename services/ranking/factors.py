"""Factor values of one candidate that are not a vector similarity: tags, taxonomy, freshness, phash.

Each returns a float in [0, 1] (higher = more relevant); see FactorScore in protos/visearch/v1/search.proto.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from visearch.shared.duplicates import hash_distance

TAXONOMY_SEPARATOR = " > "
_WORD = re.compile(r"[a-z0-9]+")
TAG_ATTRIBUTES = ("object", "colour", "concept", "tag", "category")


def hit_tags(fields: Mapping[str, Any]) -> dict[str, float]:
    """A stored row's tags with their scores: model attributes keep their score, catalogue tags count 1.0.

    Args:
        fields: the row's scalar fields (``tags``: ";"-separated, ``attributes``: JSON [[name, value, score]]).
    """
    tags = {t.strip().lower(): 1.0 for t in (fields.get("tags") or "").split(";") if t.strip()}
    for name, value, score in json.loads(fields.get("attributes") or "[]"):
        if name in TAG_ATTRIBUTES and value:
            key = str(value).lower()
            tags[key] = max(float(score), tags.get(key, 0.0))
    return tags


# Neighbour weights fall by e for every 0.02 of cosine below the nearest neighbour: a near-duplicate of the
# query (cosine ~0.9 where the next is ~0.6) gives its objects nearly alone; neighbours about as close share.
NEIGHBOUR_TEMPERATURE = 0.02


def neighbour_object_tags(
    neighbours: Sequence[tuple[float, Mapping[str, Any]]], k: int = 5, temperature: float = NEIGHBOUR_TEMPERATURE
) -> dict[str, float]:
    """Object tags of a query image estimated from its nearest visual neighbours, without running a detector
    on the query (k-nearest-neighbour tag transfer with distance-based weights: TagProp, Guillaumin et al. 2009;
    Yandex's tags from similar images).

    Args:
        neighbours: ``(visual similarity, stored fields)`` of candidates; the ``k`` most similar with a positive
            similarity vote.
        k: neighbours that vote.
        temperature: cosine scale of the weights, > 0: a voter ``d`` below the nearest weighs ``exp(-d / temperature)``.

    Returns:
        label -> the weighted mean, over the voters, of the neighbour's "object" attribute score (0 where it has
        none), in [0, 1]; {} when no voter has a positive similarity.
    """
    voters = sorted(((s, f) for s, f in neighbours if s > 0), key=lambda sf: -sf[0])[:k]
    if not voters:
        return {}
    weights = [math.exp((s - voters[0][0]) / temperature) for s, _ in voters]
    total = sum(weights)
    tags: dict[str, float] = {}
    for weight, (_, fields) in zip(weights, voters):
        for name, value, score in json.loads(fields.get("attributes") or "[]"):
            if name == "object" and value:
                key = str(value).lower()
                tags[key] = tags.get(key, 0.0) + weight * float(score) / total
    return tags


def text_tags(text: str) -> dict[str, float]:
    """Tags a text query asks for: its lower-cased words and word pairs ("red", "ankle boot"), each 1.0."""
    words = _WORD.findall(text.lower())
    return {**{w: 1.0 for w in words}, **{f"{a} {b}": 1.0 for a, b in zip(words, words[1:])}}


def tag_overlap(query: Mapping[str, float], hit: Mapping[str, float]) -> float:
    """Score-weighted overlap of the query's tags with a hit's, in [0, 1].

    ``sum over shared tags of q_t * h_t / sum over query tags of q_t``: 1 when the hit carries every query
    tag with full confidence, 0 when none (or the query has no tags).
    """
    total = sum(query.values())
    if total <= 0:
        return 0.0
    return sum(score * hit[tag] for tag, score in query.items() if tag in hit) / total


def taxonomy_agreement(a: str, b: str) -> float:
    """Shared prefix length of two taxonomy paths ("animal > dog > hound") over the longer path's depth, [0, 1]."""
    pa = [n for n in a.split(TAXONOMY_SEPARATOR) if n] if a else []
    pb = [n for n in b.split(TAXONOMY_SEPARATOR) if n] if b else []
    if not pa or not pb:
        return 0.0
    shared = 0
    for x, y in zip(pa, pb):
        if x != y:
            break
        shared += 1
    return shared / max(len(pa), len(pb))


def freshness(updated_ms: int, now_ms: int, half_life_days: float) -> float:
    """exp(-ln 2 * age / half-life): 1 for a row updated now, 0.5 at one half-life, in (0, 1]."""
    age_days = max(0, now_ms - int(updated_ms or 0)) / 86_400_000
    return math.exp(-math.log(2) * age_days / half_life_days)


# Unrelated images' 64-bit pHashes differ in ~32 bits (measured median 32 on the photos): that is "no evidence".
PHASH_UNRELATED_BITS = 32


def phash_similarity(a: int, b: int) -> float:
    """max(0, 1 - Hamming distance / 32) of two 64-bit perceptual hashes, in [0, 1]: 1 for equal hashes,
    0.5 at the near-duplicate threshold (16 bits), 0 for unrelated images; 0 when either is unknown (0)."""
    if not a or not b:
        return 0.0
    return max(0.0, 1.0 - hash_distance(int(a), int(b)) / PHASH_UNRELATED_BITS)
