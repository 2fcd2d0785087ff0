"""Message transport between pipeline stages: topics of keyed byte messages with headers and offsets.

The in-process transport here has Kafka's semantics (an append-only log per topic, consumer groups
with a position and a committed offset, at-least-once redelivery of uncommitted messages), so stage
code written against it runs unchanged over the Kafka transport that comes with the Kafka issue.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

# The topic chain of docs/architecture.md: upstream publishes to "<prefix>.images.v1"; each enrichment
# stage produces to its own topic; the indexer is terminal. Stages that are not configured are skipped
# (passed through): the next configured stage consumes the previous one's output.
STAGE_OUTPUT = {"detection": "detected", "embedding": "embedded", "ocr": "ocr", "classification": "classified"}
STAGE_ORDER = ("detection", "embedding", "ocr", "classification", "indexer")


def topic_name(prefix: str, name: str) -> str:
    """``<prefix>.<name>.v1``, e.g. ``visearch.images.v1``."""
    return f"{prefix}.{name}.v1"


def feedback_topic(prefix: str = "visearch") -> str:
    """The learning-to-rank topic ``<prefix>.feedback.v1``: FeedbackEvents (impressions the ranking service
    logs, clicks and purchases clients report), keyed by query_id."""
    return topic_name(prefix, "feedback")


@dataclass(frozen=True)
class StageTopics:
    """Where a stage reads and writes. ``output`` is None for the terminal indexer."""

    input: str
    output: str | None


def stage_topics(stages: list[str], prefix: str = "visearch") -> dict[str, StageTopics]:
    """The topic of each configured stage, in chain order.

    Raises:
        ValueError: an unknown stage, or a chain that does not end with the indexer.
    """
    unknown = set(stages) - set(STAGE_ORDER)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; known: {list(STAGE_ORDER)}")
    chain = [s for s in STAGE_ORDER if s in stages]
    if not chain or chain[-1] != "indexer":
        raise ValueError("the pipeline must end with the indexer stage")
    topics: dict[str, StageTopics] = {}
    current = topic_name(prefix, "images")
    for stage in chain:
        output = topic_name(prefix, STAGE_OUTPUT[stage]) if stage != "indexer" else None
        topics[stage] = StageTopics(current, output)
        if output is not None:  # None only for the indexer, the last stage
            current = output
    return topics


HEADER_SCHEMA = "visearch-schema"  # protobuf full name + version, e.g. "visearch.v1.ImageEvent"
HEADER_TRACE_ID = "visearch-trace-id"
HEADER_DLQ_REASON = "visearch-dlq-reason"  # the error's reason slug
HEADER_DLQ_ERROR = "visearch-dlq-error"  # human-readable message
HEADER_DLQ_STAGE = "visearch-dlq-stage"
HEADER_DLQ_TOPIC = "visearch-dlq-topic"  # where the message was consumed from (replay target)
HEADER_DLQ_PARTITION = "visearch-dlq-partition"
HEADER_DLQ_OFFSET = "visearch-dlq-offset"  # its original offset
HEADER_DLQ_EXCEPTION = "visearch-dlq-exception"  # exception class name


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
    partition: int = 0
    # The record's timestamp, ms since the epoch: Kafka's CreateTime (the producer's clock; LogAppendTime on a
    # topic configured so), in process the time it was produced; -1 unknown.
    timestamp_ms: int = -1


class Transport(Protocol):
    """What a stage worker needs from a message broker."""

    def produce(self, topic: str, key: bytes, value: bytes | None, headers: dict[str, str]) -> None:
        """Queue a message for ``topic`` (``value`` None: a tombstone of ``key`` on a compacted topic)."""

    def flush(self) -> None:
        """Block until every produced message is durably stored."""

    def poll(self, topic: str, group: str, max_records: int, timeout_s: float = 0.0) -> list[Message]:
        """Up to ``max_records`` messages after the group's position (advances the position); waits up to
        ``timeout_s`` for the first one."""

    def commit(self, topic: str, group: str) -> None:
        """Commit the group's position: committed messages are not redelivered."""

    def rewind_to_committed(self, topic: str, group: str) -> None:
        """Move the group's position back to its committed offsets (to retry an uncommitted batch)."""

    def close(self) -> None:
        """Release clients and connections."""


class InProcessTransport:
    """Kafka-like topics in memory, for the embedded mode and unit tests. Thread-safe."""

    def __init__(self) -> None:
        self._logs: dict[str, list[Message]] = defaultdict(list)
        self._positions: dict[tuple[str, str], int] = {}
        self._committed: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def produce(self, topic: str, key: bytes, value: bytes | None, headers: dict[str, str]) -> None:  # noqa: D102
        with self._lock:  # a tombstone (None) is read back as an empty value, as KafkaTransport.poll gives it
            log = self._logs[topic]
            log.append(
                Message(topic, key, value or b"", dict(headers), offset=len(log), timestamp_ms=int(time.time() * 1000))
            )

    def flush(self) -> None:  # noqa: D102 (in memory: produced means stored)
        return None

    def poll(self, topic: str, group: str, max_records: int, timeout_s: float = 0.0) -> list[Message]:  # noqa: D102, ARG002
        with self._lock:
            pos = self._positions.get((topic, group), self._committed.get((topic, group), 0))
            batch = self._logs[topic][pos : pos + max_records]
            self._positions[(topic, group)] = pos + len(batch)
            return batch

    def commit(self, topic: str, group: str) -> None:  # noqa: D102
        with self._lock:
            self._committed[(topic, group)] = self._positions.get((topic, group), 0)

    def close(self) -> None:  # noqa: D102
        return None

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
