"""Per-user taste profiles (personalisation): concept keys of catalogue rows, folding feedback events into a
``visearch.v1.UserProfile``, and what a profile says at query time.

A profile holds decayed weighted counts per concept key ("colour:red", "tag:sneaker", "taxonomy:clothing > shoe",
"brand:x", "category:y") of the hits a user acted on (``positive``) and of the hits shown above them that the
user skipped (``negative``, one unit of mass per action spread over the skipped hits: the "skip-above" click
model, Joachims et al., SIGIR 2005), and per factor the decayed sum of how much the acted-on hit beat the skipped
ones. Counts decay exponentially with event time (half-life in days), so old taste fades.

Affinity of a concept: ``max(0, positive - negative) / evidence`` in [0, 1] (evidence: the decayed weight of all
actions): a concept every page shares (the query's category) is as often skipped as taken and scores ~0; one the
user keeps choosing scores ~1. The preference of a candidate (:func:`preference_score`) compares its concepts with
the profile family by family. Folding is idempotent per event id (query_id, image_id, action), within the last
``recent_events`` ids a profile keeps; the profile folder (services/profiles/folder.py) also skips the records at
or below the profile's last folded offset of their feedback partition (a redelivery).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from visearch.v1 import events_pb2

Action = events_pb2.FeedbackEvent
# Weight of each action as evidence of taste; impressions carry none (what was shown is not what was liked).
ACTION_WEIGHTS = {
    Action.ACTION_CLICK: 1.0,
    Action.ACTION_LIKE: 2.0,
    Action.ACTION_ADD_TO_CART: 2.0,
    Action.ACTION_PURCHASE: 3.0,
}
FAMILIES = ("colour", "tag", "taxonomy", "brand", "category")
COLOUR_MIN_FRACTION = 0.15  # a colour attribute (pixel fraction) below this is not a concept of the image
_TAG_ATTRIBUTES = ("object", "concept", "tag")
_TAXONOMY_SEPARATOR = " > "
_DAY_MS = 86_400_000


def concept_keys(fields: Mapping[str, Any]) -> list[str]:
    """The concept keys of a stored row (Milvus scalar fields), sorted and unique.

    Args:
        fields: any of ``tags`` (";"-separated), ``attributes`` (JSON ``[[name, value, score], ...]``: colours
            with a pixel fraction >= 0.15, objects, concepts and tags), ``taxonomy`` ("a > b > c": every node's
            path from the root), ``brand``, ``category``. Values are lower-cased.

    Raises:
        ValueError: ``attributes`` is not valid JSON.
    """
    keys = {f"tag:{t.strip().lower()}" for t in (fields.get("tags") or "").split(";") if t.strip()}
    for name, value, score in json.loads(fields.get("attributes") or "[]"):
        value = str(value).strip().lower()
        if not value:
            continue
        if name == "colour" and float(score) >= COLOUR_MIN_FRACTION:
            keys.add(f"colour:{value}")
        elif name in _TAG_ATTRIBUTES:
            keys.add(f"tag:{value}")
    nodes = [n.strip().lower() for n in (fields.get("taxonomy") or "").split(_TAXONOMY_SEPARATOR) if n.strip()]
    keys.update(f"taxonomy:{_TAXONOMY_SEPARATOR.join(nodes[: i + 1])}" for i in range(len(nodes)))
    for family in ("brand", "category"):
        value = str(fields.get(family) or "").strip().lower()
        if value:
            keys.add(f"{family}:{value}")
    return sorted(keys)


def event_id(event: events_pb2.FeedbackEvent) -> str:
    """A feedback event's id for idempotent folding: 16 hex digits of sha1(query_id, image_id, action)."""
    raw = f"{event.query_id}\x00{event.image_id}\x00{event.action}".encode()
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:16]


def _decay(profile: events_pb2.UserProfile, factor: float) -> None:
    for counts in (profile.positive, profile.negative, profile.factor_lift):
        for key in list(counts):
            counts[key] *= factor
    profile.evidence *= factor
    profile.lift_events *= factor


def decay_factor(age_ms: float, half_life_days: float) -> float:
    """``0.5 ** (age / half-life)`` for an age in ms (negative ages count 0), in (0, 1]."""
    return math.pow(0.5, max(0.0, age_ms) / (half_life_days * _DAY_MS))


def fold(
    profile: events_pb2.UserProfile,
    event: events_pb2.FeedbackEvent,
    half_life_days: float,
    max_concepts: int = 256,
    recent_events: int = 512,
) -> bool:
    """Fold one feedback event into ``profile`` (in place); returns False when it changes nothing: not a taste
    action (an impression, an unknown action), no user, another user's, or an event id already folded.

    The profile's counts are first decayed to the later of its clock and the event's time (an event older than
    the clock is weighted down instead), then the action's weight is added to the acted-on hit's concepts and
    spread over the skipped hits' concepts, and its factor lifts are summed. The ``max_concepts`` strongest keys
    of each count map are kept; ``version`` is not changed (the writer increments it once per write).
    """
    weight = ACTION_WEIGHTS.get(event.action, 0.0)
    if weight == 0.0 or not event.user_id or (profile.user_id and profile.user_id != event.user_id):
        return False
    key = event_id(event)
    if key in profile.recent_events:
        return False
    profile.user_id = event.user_id
    when = event.event_time.ToMilliseconds() if event.HasField("event_time") else profile.updated_ms
    if when > profile.updated_ms:
        if profile.updated_ms:
            _decay(profile, decay_factor(when - profile.updated_ms, half_life_days))
        profile.updated_ms = when
    else:
        weight *= decay_factor(profile.updated_ms - when, half_life_days)
    profile.evidence += weight
    for concept in set(event.concepts):
        profile.positive[concept] += weight
    skipped = list(event.skipped_concepts)
    hits_skipped = event.skipped_hits or _skipped_hits(skipped)
    against = weight * (event.skipped_weight or 1.0) / hits_skipped
    for concept in skipped:
        profile.negative[concept] += against
    if event.factor_lift:
        profile.lift_events += weight
        for factor, lift in event.factor_lift.items():
            profile.factor_lift[factor] += weight * float(lift)
    profile.events += 1
    profile.recent_events.append(key)
    if len(profile.recent_events) > recent_events:
        del profile.recent_events[: len(profile.recent_events) - recent_events]
    for counts in (profile.positive, profile.negative):
        _keep_strongest(counts, max_concepts)
    return True


def _skipped_hits(skipped: list[str]) -> int:
    """How many hits ``skipped_concepts`` stands for when the event does not say (a client's own concepts): every
    hit has at most one category and one brand key; their count, at least 1."""
    for family in ("category:", "brand:"):
        count = sum(1 for c in skipped if c.startswith(family))
        if count:
            return count
    return 1


def _keep_strongest(counts: Any, limit: int) -> None:
    if len(counts) > limit:
        for key, _ in sorted(counts.items(), key=lambda kv: kv[1])[: len(counts) - limit]:
            del counts[key]


def evidence_now(profile: events_pb2.UserProfile, now_ms: int, half_life_days: float) -> float:
    """The profile's evidence (decayed weighted actions) at ``now_ms``."""
    return profile.evidence * decay_factor(now_ms - profile.updated_ms, half_life_days)


def affinities(profile: events_pb2.UserProfile) -> dict[str, float]:
    """Concept key -> affinity in [0, 1] (``max(0, positive - negative) / evidence``), positive ones only.

    Decay scales counts and evidence alike, so affinities do not depend on the time they are read at.
    """
    if profile.evidence <= 0:
        return {}
    found = {}
    for key, count in profile.positive.items():
        value = min(1.0, (count - profile.negative.get(key, 0.0)) / profile.evidence)
        if value > 0:
            found[key] = value
    return found


def family_of(key: str) -> str:
    """The family of a concept key ("colour:red" -> "colour")."""
    return key.split(":", 1)[0]


def preference_score(profile: Mapping[str, float], concepts: Iterable[str]) -> float:
    """How well a candidate's concept keys match a user's affinities, in [0, 1].

    Per family, the candidate's best affinity over its keys of that family; their sum over the sum of the
    profile's best affinity per family. 1: the candidate carries the user's strongest concept of every family
    the user has a taste in; 0: none of the user's concepts (or an empty profile).
    """
    best: dict[str, float] = {}
    for key, value in profile.items():
        family = family_of(key)
        best[family] = max(best.get(family, 0.0), value)
    total = sum(best.values())
    if total <= 0:
        return 0.0
    got: dict[str, float] = {}
    for key in concepts:
        value = profile.get(key, 0.0)
        if value > 0:
            family = family_of(key)
            got[family] = max(got.get(family, 0.0), value)
    return sum(got.values()) / total


def factor_multipliers(
    profile: events_pb2.UserProfile, factors: Iterable[str], gain: float, cap: float
) -> dict[str, float]:
    """Per-user weight multipliers of ``factors``: ``1 + clip(gain * (lift - mean lift), -cap, cap)``, where a
    factor's lift is how much the user's acted-on hits beat the skipped ones by that factor, on average, and the
    mean lift is over the given factors that have one: the factors the user's choices follow more than the others
    get heavier (> 1), the others lighter (< 1). (Hits ranked above a click beat it on most factors, so raw lifts
    are mostly negative: only their differences say which factor matters to the user.) Factors with no lift
    recorded are left out (multiplier 1); with fewer than two, there is nothing to compare: {}."""
    if profile.lift_events <= 0:
        return {}
    lifts = {f: profile.factor_lift[f] / profile.lift_events for f in factors if f in profile.factor_lift}
    if len(lifts) < 2:
        return {}
    mean = sum(lifts.values()) / len(lifts)
    return {f: 1.0 + max(-cap, min(cap, gain * (lift - mean))) for f, lift in lifts.items()}
