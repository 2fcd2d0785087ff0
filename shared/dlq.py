"""Dead-letter topics: read them for inspection, and replay letters to the topic they came from.

A dead letter is the original message (same key and value) with headers that say why it failed:
``visearch-dlq-reason``, ``-error``, ``-stage``, ``-topic``, ``-partition``, ``-offset``, ``-exception``.
"""

from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from visearch.shared.config import KafkaSettings
from visearch.shared.kafka import KafkaTransport, connection_options
from visearch.shared.transport import (
    HEADER_DLQ_ERROR,
    HEADER_DLQ_EXCEPTION,
    HEADER_DLQ_OFFSET,
    HEADER_DLQ_PARTITION,
    HEADER_DLQ_REASON,
    HEADER_DLQ_STAGE,
    HEADER_DLQ_TOPIC,
)

REPLAY_GROUP = "visearch-dlq-replay"
# Headers added by the DLQ, removed again on replay so a replayed message looks like the original.
_DLQ_HEADERS = {
    HEADER_DLQ_REASON,
    HEADER_DLQ_ERROR,
    HEADER_DLQ_STAGE,
    HEADER_DLQ_TOPIC,
    HEADER_DLQ_PARTITION,
    HEADER_DLQ_OFFSET,
    HEADER_DLQ_EXCEPTION,
}


@dataclass
class DeadLetter:
    """One dead letter and where it came from."""

    partition: int
    offset: int
    key: str
    value: bytes
    headers: dict[str, str]

    reason = property(lambda self: self.headers.get(HEADER_DLQ_REASON, ""))
    error = property(lambda self: self.headers.get(HEADER_DLQ_ERROR, ""))
    stage = property(lambda self: self.headers.get(HEADER_DLQ_STAGE, ""))
    exception = property(lambda self: self.headers.get(HEADER_DLQ_EXCEPTION, ""))
    source_topic = property(lambda self: self.headers.get(HEADER_DLQ_TOPIC, ""))
    source_partition = property(lambda self: self.headers.get(HEADER_DLQ_PARTITION, ""))
    source_offset = property(lambda self: self.headers.get(HEADER_DLQ_OFFSET, ""))


def _behind(position: int | None, end: int) -> bool:
    """Whether a partition has records left before ``end``; a position kafka-python could not determine yet
    (None) counts as behind: the next poll resolves it."""
    return position is None or position < end


def _letter(record: ConsumerRecord) -> DeadLetter:
    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in (record.headers or [])}
    return DeadLetter(
        record.partition, record.offset, (record.key or b"").decode("utf-8", "replace"), record.value or b"", headers
    )


def read_dead_letters(
    settings: KafkaSettings, topic: str, limit: int = 100, timeout_s: float = 5.0
) -> list[DeadLetter]:
    """Up to ``limit`` dead letters from the start of ``topic``, without joining a group or committing."""
    consumer = KafkaConsumer(**connection_options(settings), enable_auto_commit=False, group_id=None)
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or [])
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        letters: list[DeadLetter] = []
        while len(letters) < limit and any(_behind(consumer.position(tp), ends[tp]) for tp in tps):
            batch = consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=limit - len(letters))
            if not batch:
                break
            letters.extend(_letter(r) for records in batch.values() for r in records)
        return letters[:limit]
    finally:
        consumer.close(autocommit=False)


def replay_dead_letters(
    settings: KafkaSettings,
    topic: str,
    reasons: list[str] | None = None,
    limit: int | None = None,
    timeout_s: float = 5.0,
) -> tuple[int, int]:
    """Re-publish letters of ``topic`` (optionally only some reasons) to their source topics.

    Progress is committed after the replayed messages are flushed, in the consumer group
    ``visearch-dlq-replay`` (or ``visearch-dlq-replay-<reasons>`` for a filtered replay, so filtering
    by one reason does not mark the others as handled): running it twice does not replay a letter
    twice. Returns ``(replayed, skipped)``.
    """
    group = REPLAY_GROUP + ("-" + "+".join(sorted(reasons)) if reasons else "")
    transport = KafkaTransport(settings, "visearch-dlq-replay")
    replayed = skipped = 0
    try:
        while limit is None or replayed + skipped < limit:
            batch = (
                settings.max_poll_records
                if limit is None
                else min(settings.max_poll_records, limit - replayed - skipped)
            )
            messages = transport.poll(topic, group, batch, timeout_s)
            if not messages:
                break
            for message in messages:
                if reasons and message.headers.get(HEADER_DLQ_REASON) not in reasons:
                    skipped += 1
                    continue
                source = message.headers.get(HEADER_DLQ_TOPIC) or topic.removesuffix(".dlq")
                headers = {k: v for k, v in message.headers.items() if k not in _DLQ_HEADERS}
                transport.produce(source, message.key, message.value, headers)
                replayed += 1
            transport.flush()
            transport.commit(topic, group)
    finally:
        transport.close()
    return replayed, skipped
