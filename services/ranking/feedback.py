"""The feedback log: impressions of served hits and clients' clicks and purchases, on the feedback topic.

Every event is a ``visearch.v1.FeedbackEvent`` keyed by its query id (so one query's events stay in order),
the training data of ``visearch rank fit``. Impressions never fail a search; a Feedback call is acknowledged
only once the broker has the events.
"""

from __future__ import annotations

import threading

from visearch.shared.errors import DependencyUnavailableError, InvalidEventError
from visearch.shared.logging import get_logger
from visearch.shared.metrics import FEEDBACK_EVENTS
from visearch.shared.profile_topic import write_tombstone
from visearch.shared.transport import HEADER_SCHEMA, Transport
from visearch.v1 import events_pb2, search_pb2

log = get_logger("ranking")

FEEDBACK_SCHEMA = "visearch.v1.FeedbackEvent"


class FeedbackLog:
    """Publishes feedback events through ``transport`` (Kafka or in-process; None: feedback is unavailable).

    Args:
        transport: the producer; not thread-safe, so calls are serialised here.
        topic: the feedback topic.
        default_tenant: the tenant of events that name none.
        impressions: log every served hit as an ACTION_IMPRESSION event.
    """

    def __init__(self, transport: Transport | None, topic: str, default_tenant: str, impressions: bool = True) -> None:
        self.transport = transport
        self.topic = topic
        self.default_tenant = default_tenant
        self.impressions = impressions
        self._lock = threading.Lock()

    def publish(self, request: search_pb2.FeedbackRequest) -> int:
        """Publish a Feedback request's events (all or none); returns how many were accepted.

        Raises:
            DependencyUnavailableError: (``feedback_unavailable``, UNAVAILABLE) no feedback topic is configured.
            InvalidEventError: no events, or an event without query_id, image_id or action (nothing published).
        """
        if self.transport is None:
            raise DependencyUnavailableError(
                "no feedback topic is configured (set VISEARCH_KAFKA_BOOTSTRAP)", reason="feedback_unavailable"
            )
        if not request.events:
            raise InvalidEventError("no feedback events", reason="empty_query")
        for n, event in enumerate(request.events):
            if not event.query_id or not event.image_id or event.action == events_pb2.FeedbackEvent.ACTION_UNSPECIFIED:
                raise InvalidEventError(f"event {n}: query_id, image_id and action are required", reason="bad_feedback")
        with self._lock:
            for event in request.events:
                event = events_pb2.FeedbackEvent.FromString(event.SerializeToString())
                event.tenant = event.tenant or self.default_tenant
                if not event.HasField("event_time"):
                    event.event_time.GetCurrentTime()
                self.transport.produce(
                    self.topic, event.query_id.encode(), event.SerializeToString(), {HEADER_SCHEMA: FEEDBACK_SCHEMA}
                )
                action = events_pb2.FeedbackEvent.Action.Name(event.action).removeprefix("ACTION_").lower()
                FEEDBACK_EVENTS.labels(action=action).inc()
            self.transport.flush()  # acknowledged by the broker before we say accepted
        return len(request.events)

    def write_tombstone(self, topic: str, key: str) -> None:
        """Produce a tombstone (null value) of ``key`` to the compacted ``topic`` and wait for the broker.

        Raises:
            DependencyUnavailableError: no transport is configured (``personalisation_unavailable``) or the
                broker did not acknowledge it.
        """
        if self.transport is None:
            raise DependencyUnavailableError(
                "no profiles topic is configured (set VISEARCH_KAFKA_BOOTSTRAP)", reason="personalisation_unavailable"
            )
        with self._lock:
            write_tombstone(self.transport, topic, key)

    def log_impressions(
        self, response: search_pb2.SearchResponse, tenant: str, query_summary: str, offset: int, user_id: str = ""
    ) -> None:
        """One ACTION_IMPRESSION event per served hit, with its factor values (and the requesting user_id). A
        failing topic is logged and counted, never raised: searching matters more than logging."""
        if self.transport is None or not self.impressions or not response.hits:
            return
        events = []
        for position, hit in enumerate(response.hits, start=offset):
            event = events_pb2.FeedbackEvent(
                query_id=response.query_id,
                tenant=tenant,
                image_id=hit.image_id,
                position=position,
                action=events_pb2.FeedbackEvent.ACTION_IMPRESSION,
                factors={f.name: f.value for f in hit.factors},
                ranker=response.ranker,
                query=query_summary,
                user_id=user_id,
            )
            event.event_time.GetCurrentTime()
            events.append(event.SerializeToString())
        try:
            with self._lock:
                for value in events:
                    self.transport.produce(
                        self.topic, response.query_id.encode(), value, {HEADER_SCHEMA: FEEDBACK_SCHEMA}
                    )
            FEEDBACK_EVENTS.labels(action="impression").inc(len(events))
        except Exception as exc:  # noqa: BLE001 (any transport failure: searching matters more than logging)
            log.warning("impressions_not_logged", query_id=response.query_id, error=str(exc))
