"""Personalisation at query time: the requesting user's profile as the ``preference`` factor and per-user factor
weights, the served pages a click is explained by, and a profile's display and deletion.

A request with a ``user_id`` whose profile has at least ``min_evidence`` (and ``personalise`` not false) is ranked
by the request's ranker with two changes, both visible in the hits' factor contributions: the ``preference``
factor (the candidate's concept keys against the user's affinities, :func:`~visearch.shared.user_profiles.
preference_score`) weighted ``min(max_weight, weight * evidence / full_evidence)``, and the weights of the factors
the ranker already weighs multiplied by the user's factor multipliers (within 1 +- ``factor_cap``). Every other
request, and a user without (enough) history, ranks exactly as before: the ranker is returned unchanged and the
preference factor is never computed. Filters apply to retrieval, before any factor: they always win.

The request's affinities reach the factor's scorer through a context variable set at the start of each search
RPC (:meth:`Personaliser.begin`): scoring runs on the request's thread.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import replace
from typing import Any

from visearch.services.ranking.feedback import FeedbackLog
from visearch.services.ranking.ranker import Ranker
from visearch.shared.config import PersonalisationSettings
from visearch.shared.errors import DependencyUnavailableError, InvalidEventError
from visearch.shared.profile_topic import ProfileBook
from visearch.shared.store import MilvusStore
from visearch.shared.user_profiles import (
    ACTION_WEIGHTS,
    affinities,
    concept_keys,
    evidence_now,
    factor_multipliers,
    preference_score,
)
from visearch.v1 import common_pb2, search_pb2

PREFERENCE_FACTOR = "preference"
# What the hit below a click on the first hit counts against the click's concepts (a weaker signal than the hits
# skipped above a click: the user may not have looked at it).
NEXT_HIT_WEIGHT = 0.5
CONCEPT_FIELDS = ("tags", "attributes", "taxonomy", "brand", "category")  # the stored fields concept_keys reads
# The request's (user_id, affinities); affinities None: not personalised.
_REQUEST: ContextVar[tuple[str, Mapping[str, float] | None]] = ContextVar("personalisation", default=("", None))


def preference_of(fields: Mapping[str, Any]) -> float:
    """The ``preference`` factor of a candidate's stored fields for the current request, in [0, 1] (0 when the
    request is not personalised)."""
    profile = _REQUEST.get()[1]
    return preference_score(profile, concept_keys(fields)) if profile else 0.0


class Personaliser:
    """Applies, shows and forgets user profiles for one ranking service.

    Args:
        store: reads the acted-on and skipped hits' concepts for feedback events.
        settings: weights, evidence thresholds, caps, page cache size.
        book: the profiles (fed by a tail of the profiles topic); None: personalisation is unavailable.
        sync: called before reading the book (an in-process tail's ``sync``; None over Kafka: a thread feeds it).
        feedback: the feedback log, whose producer writes the tombstones of ``ForgetUser``.
        profiles_topic: the compacted profiles topic.
        default_tenant: tenant of feedback events that name none.
    """

    def __init__(
        self,
        store: MilvusStore,
        settings: PersonalisationSettings,
        book: ProfileBook | None,
        sync: Callable[[], None] | None,
        feedback: FeedbackLog,
        profiles_topic: str,
        default_tenant: str,
    ) -> None:
        self.store, self.settings, self.book, self.sync = store, settings, book, sync
        self.feedback, self.profiles_topic, self.default_tenant = feedback, profiles_topic, default_tenant
        self._pages: OrderedDict[str, list[tuple[str, dict[str, float]]]] = OrderedDict()
        self._lock = threading.Lock()

    def _profile(self, user_id: str) -> Any:
        if self.book is None:
            return None
        if self.sync is not None:
            self.sync()
        return self.book.get(user_id)

    def begin(self, user_id: str, personalise: bool | None, ranker: Ranker) -> Ranker:
        """Start a search RPC: the ranker for this user (unchanged when nothing applies), and the request's
        context for the preference factor and the page cache. Call it at the start of every search RPC."""
        profile = self._profile(user_id) if user_id and personalise is not False and self.settings.enabled else None
        s = self.settings
        evidence = evidence_now(profile, int(time.time() * 1000), s.half_life_days) if profile else 0.0
        if profile is None or evidence < max(s.min_evidence, 1e-9):
            _REQUEST.set((user_id, None))
            return ranker
        weight = min(s.max_weight, s.weight * min(1.0, evidence / s.full_evidence))
        weighed = [f for f, w in ranker.weights.items() if w != 0.0 and f != PREFERENCE_FACTOR]
        weights = dict(ranker.weights)
        for factor, multiplier in factor_multipliers(profile, weighed, s.factor_gain, s.factor_cap).items():
            weights[factor] *= multiplier
        weights[PREFERENCE_FACTOR] = weight
        _REQUEST.set((user_id, affinities(profile)))
        return replace(ranker, name=f"{ranker.name}+personal", weights=weights)

    def current_user(self) -> str:
        """The user_id of the search being served ("" for none)."""
        return _REQUEST.get()[0]

    def served(self, response: search_pb2.SearchResponse) -> None:
        """Remember a page served to a user (hit ids and factor values), for the skipped hits of its clicks."""
        user_id = self.current_user()
        if not user_id or self.settings.page_cache == 0:
            return
        page = [(hit.image_id, {f.name: f.value for f in hit.factors}) for hit in response.hits]
        with self._lock:
            self._pages[response.query_id] = page
            while len(self._pages) > self.settings.page_cache:
                self._pages.popitem(last=False)

    def enrich(self, request: search_pb2.FeedbackRequest) -> search_pb2.FeedbackRequest:
        """A copy of a Feedback request whose users' taste actions carry the acted-on hit's concepts, and, when
        this process served the page, the skipped hits' concepts and the factor lifts. Events of unknown
        images keep no concepts (the folder then learns nothing from them)."""
        request = search_pb2.FeedbackRequest.FromString(request.SerializeToString())
        wanted = [e for e in request.events if e.user_id and e.action in ACTION_WEIGHTS and not e.concepts]
        if not wanted:
            return request
        acted = {(e.query_id, e.image_id) for e in request.events if e.action in ACTION_WEIGHTS}
        plans = []
        for event in wanted:
            with self._lock:
                page = self._pages.get(event.query_id, [])
            ids = [i for i, _ in page]
            # Skipped: the hits above the acted-on one ("click > skip above", Joachims et al. 2005); for a click on
            # the first hit, which has none, the one right below it ("click > no-click next").
            at = ids.index(event.image_id) if event.image_id in ids else -1
            shown = page[:at] if at > 0 else page[1:2] if at == 0 else []
            skipped = [(i, f) for i, f in shown if (event.query_id, i) not in acted]
            clicked = dict(page)[event.image_id] if event.image_id in ids else {}
            plans.append((event, skipped, clicked))
        by_tenant: dict[str, set[str]] = {}
        for event, skipped, _ in plans:
            wanted_ids = by_tenant.setdefault(event.tenant or self.default_tenant, set())
            wanted_ids.update([event.image_id, *(i for i, _ in skipped)])
        concepts = {
            (tenant, row.image_id): concept_keys(row.fields)
            for tenant, ids in by_tenant.items()
            for row in self.store.rows(tenant, sorted(ids), output_fields=("image_id", *CONCEPT_FIELDS))
        }
        for event, skipped, clicked in plans:
            tenant = event.tenant or self.default_tenant
            event.concepts.extend(concepts.get((tenant, event.image_id), []))
            for image_id, _ in skipped:
                event.skipped_concepts.extend(concepts.get((tenant, image_id), []))
            event.skipped_hits = len(skipped)
            if skipped and page and event.image_id == page[0][0]:
                event.skipped_weight = NEXT_HIT_WEIGHT
            if skipped and clicked:
                for factor, value in clicked.items():
                    mean = sum(f.get(factor, 0.0) for _, f in skipped) / len(skipped)
                    event.factor_lift[factor] = value - mean
        return request

    def show(self, user_id: str) -> search_pb2.UserProfileResponse:
        """The user's profile as the service holds it, with its strongest concepts and factor multipliers.

        Raises:
            InvalidEventError: no user_id (``empty_user_id``).
            DependencyUnavailableError: the service reads no profiles (``personalisation_unavailable``).
        """
        profile = self._checked(user_id)
        response = search_pb2.UserProfileResponse(user_id=user_id)
        if profile is None:
            return response
        s = self.settings
        evidence = evidence_now(profile, int(time.time() * 1000), s.half_life_days)
        strongest = sorted(affinities(profile).items(), key=lambda kv: (-kv[1], kv[0]))[:20]
        response.found, response.applies = True, evidence >= s.min_evidence
        response.profile.CopyFrom(profile)
        response.concepts.extend(common_pb2.Attribute(name="concept", value=k, score=v) for k, v in strongest)
        response.factor_multipliers.update(
            factor_multipliers(profile, profile.factor_lift, s.factor_gain, s.factor_cap)
        )
        return response

    def forget(self, user_id: str) -> search_pb2.ForgetUserResponse:
        """Delete the user's profile: a tombstone on the profiles topic (acknowledged by the broker), then the cache.

        Raises:
            InvalidEventError: no user_id. DependencyUnavailableError: no profiles topic, or the broker failed.
        """
        existed = self._checked(user_id) is not None
        self.feedback.write_tombstone(self.profiles_topic, user_id)
        assert self.book is not None  # _checked raised otherwise
        self.book.forget(user_id)
        return search_pb2.ForgetUserResponse(existed=existed)

    def _checked(self, user_id: str) -> Any:
        if not user_id:
            raise InvalidEventError("set user_id", reason="empty_user_id")
        if self.book is None:
            raise DependencyUnavailableError(
                "this ranking service reads no user profiles (set VISEARCH_KAFKA_BOOTSTRAP and "
                "VISEARCH_PERSONALISATION_ENABLED)",
                reason="personalisation_unavailable",
            )
        return self._profile(user_id)
