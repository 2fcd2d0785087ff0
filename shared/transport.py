"""Message transport between pipeline stages: topics of keyed byte messages with headers and offsets.

The in-process transport here has Kafka's semantics (an append-only log per topic, consumer groups
with a position and a committed offset, at-least-once redelivery of uncommitted messages), so stage
code written against it runs unchanged over the Kafka transport that comes with the Kafka issue.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

# The topic chain of docs/architecture.md. Stages that do not exist yet are simply not in the chain.
TOPIC_IMAGES = "visearch.images.v1"
TOPIC_DETECTED = "visearch.detected.v1"
TOPIC_EMBEDDED = "visearch.embedded.v1"
TOPIC_OCR = "visearch.ocr.v1"
TOPIC_CLASSIFIED = "visearch.classified.v1"

HEADER_SCHEMA = "visearch-schema"          # protobuf full name + version, e.g. "visearch.v1.ImageEvent"
HEADER_TRACE_ID = "visearch-trace-id"
HEADER_DLQ_REASON = "visearch-dlq-reason"  # the error's reason slug
HEADER_DLQ_ERROR = "visearch-dlq-error"    # human-readable message
HEADER_DLQ_STAGE = "visearch-dlq-stage"


def dlq_topic(topic: str) -> str:
    """Dead-letter topic of ``topic``: ``<topic>.dlq``."""
    return f"{topic}.dlq"


@dataclass
class Message:
    """One record: ``key`` (the image id, so one image's events stay ordered), ``value`` (protobuf bytes)."""

    topic: str
    key: bytes
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)
    offset: int = -1


class Transport(Protocol):
    """What a stage worker needs from a message broker."""

    def produce(self, topic: str, key: bytes, value: bytes, headers: dict[str, str]) -> None:
        """Queue a message for ``topic``."""

    def flush(self) -> None:
        """Block until every produced message is durably stored."""

    def poll(self, topic: str, group: str, max_records: int) -> list[Message]:
        """Up to ``max_records`` messages after the group's position (advances the position)."""

    def commit(self, topic: str, group: str) -> None:
        """Commit the group's position: committed messages are not redelivered."""


class InProcessTransport:
    """Kafka-like topics in memory, for the embedded mode and unit tests. Thread-safe."""

    def __init__(self) -> None:
        self._logs: dict[str, list[Message]] = defaultdict(list)
        self._positions: dict[tuple[str, str], int] = {}
        self._committed: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def produce(self, topic: str, key: bytes, value: bytes, headers: dict[str, str]) -> None:  # noqa: D102
        with self._lock:
            log = self._logs[topic]
            log.append(Message(topic, key, value, dict(headers), offset=len(log)))

    def flush(self) -> None:  # noqa: D102 (in memory: produced means stored)
        return None

    def poll(self, topic: str, group: str, max_records: int) -> list[Message]:  # noqa: D102
        with self._lock:
            pos = self._positions.get((topic, group), self._committed.get((topic, group), 0))
            batch = self._logs[topic][pos : pos + max_records]
            self._positions[(topic, group)] = pos + len(batch)
            return batch

    def commit(self, topic: str, group: str) -> None:  # noqa: D102
        with self._lock:
            self._committed[(topic, group)] = self._positions.get((topic, group), 0)

    def rewind_to_committed(self, topic: str, group: str) -> None:
        """Forget the uncommitted position, as a restarted Kafka consumer would (redelivery)."""
        with self._lock:
            self._positions.pop((topic, group), None)

    def lag(self, topic: str, group: str) -> int:
        """Messages in ``topic`` not yet committed by ``group``."""
        with self._lock:
            return len(self._logs[topic]) - self._committed.get((topic, group), 0)

    def messages(self, topic: str) -> list[Message]:
        """Every message ever produced to ``topic`` (for DLQ inspection and tests)."""
        with self._lock:
            return list(self._logs[topic])
