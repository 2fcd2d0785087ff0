"""The user-profile topic: a compacted Kafka topic ``<prefix>.user-profiles``, keyed by user_id, whose latest
value per key is that user's ``visearch.v1.UserProfile`` (an empty value, a tombstone, deletes it), and the
in-memory :class:`ProfileBook` every reader rebuilds from it.

The profile folder (``visearch serve profiles``) is the one writer of profiles; the ranking service reads them
(and writes tombstones for ``ForgetUser``). Both keep a book fed by a tail of the topic: over Kafka a background
thread (:class:`KafkaProfileTail`) that reads the topic from its beginning, so a restarted process loses nothing;
in process (embedded mode, tests) :class:`InProcessProfileTail` reads the in-memory topic when asked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from visearch.shared.config import KafkaSettings
from visearch.shared.errors import DependencyUnavailableError
from visearch.shared.logging import get_logger
from visearch.shared.transport import HEADER_SCHEMA, InProcessTransport, Message, Transport, topic_name
from visearch.v1 import events_pb2

log = get_logger("profiles")

PROFILE_SCHEMA = "visearch.v1.UserProfile"


def profiles_topic(prefix: str = "visearch") -> str:
    """The compacted topic of user profiles, ``<prefix>.user-profiles.v1``."""
    return topic_name(prefix, "user-profiles")


# Topic configuration of the profiles topic: compacted (latest value per user), tombstones kept a day so that
# every reader sees a deletion before the key disappears.
PROFILES_TOPIC_CONFIG = {"cleanup.policy": "compact", "delete.retention.ms": str(86_400_000)}


class ProfileBook:
    """The latest profile of every user, thread-safe: what the topic says, plus the writes of this process.

    ``apply`` takes records in topic order: a profile replaces the held one unless its version is lower (a
    write of this process the tail has not read back yet is newer); a tombstone deletes it and records when.
    """

    def __init__(self) -> None:
        self._profiles: dict[str, events_pb2.UserProfile] = {}
        self._forgotten_ms: dict[str, int] = {}
        self._lock = threading.Lock()
        self.records = 0  # topic records applied (for tests and logs)

    def get(self, user_id: str) -> events_pb2.UserProfile | None:
        """A copy of the user's profile, or None."""
        with self._lock:
            held = self._profiles.get(user_id)
            return events_pb2.UserProfile.FromString(held.SerializeToString()) if held is not None else None

    def put(self, profile: events_pb2.UserProfile) -> None:
        """Hold ``profile`` (a write of this process, acknowledged by the broker)."""
        with self._lock:
            held = self._profiles.get(profile.user_id)
            if held is None or profile.version >= held.version:
                self._profiles[profile.user_id] = profile

    def forget(self, user_id: str) -> bool:
        """Drop the user's profile (a tombstone); returns whether one was held."""
        with self._lock:
            self._forgotten_ms[user_id] = int(time.time() * 1000)
            return self._profiles.pop(user_id, None) is not None

    def forgotten_ms(self, user_id: str) -> int:
        """When this process last saw the user's profile deleted, ms since the epoch (0: never)."""
        with self._lock:
            return self._forgotten_ms.get(user_id, 0)

    def apply(self, message: Message) -> None:
        """Apply one record of the profiles topic (a profile, or a tombstone: an empty value).

        An undecodable value is logged and skipped.
        """
        user_id = message.key.decode("utf-8", "replace")
        self.records += 1
        if not message.value:
            self.forget(user_id)
            return
        try:
            profile = events_pb2.UserProfile.FromString(message.value)
        except Exception as exc:  # noqa: BLE001 (protobuf's DecodeError and friends: skip the record)
            log.warning("profile_undecodable", user_id=user_id, offset=message.offset, error=str(exc))
            return
        self.put(profile)

    def __len__(self) -> int:
        with self._lock:
            return len(self._profiles)


def write_profile(transport: Transport, topic: str, profile: events_pb2.UserProfile) -> None:
    """Produce ``profile`` to the profiles topic (keyed by its user_id); the caller flushes."""
    transport.produce(topic, profile.user_id.encode(), profile.SerializeToString(), {HEADER_SCHEMA: PROFILE_SCHEMA})


def write_tombstone(transport: Transport, topic: str, user_id: str) -> None:
    """Produce and flush a tombstone for ``user_id`` (a null value: compaction removes the key).

    Raises:
        DependencyUnavailableError: the broker did not acknowledge it.
    """
    transport.produce(topic, user_id.encode(), None, {HEADER_SCHEMA: PROFILE_SCHEMA})
    transport.flush()


class InProcessProfileTail:
    """Feeds a book from an in-memory topic: :meth:`sync` applies the records produced since the last call."""

    def __init__(self, transport: InProcessTransport, topic: str, book: ProfileBook) -> None:
        self.transport, self.topic, self.book = transport, topic, book
        self._group = f"profile-tail-{id(self)}"  # a reader of its own, from the topic's beginning

    def sync(self) -> None:
        """Apply the records produced to the topic since the last call."""
        while messages := self.transport.poll(self.topic, self._group, 1000):
            for message in messages:
                self.book.apply(message)

    def close(self) -> None:
        """Nothing to release."""


class KafkaProfileTail:
    """A background thread reading the profiles topic from its beginning into ``book``, then following it.

    No consumer group: every reader reads every partition (the topic is the state, not a queue). Raises nothing
    after start: a broker outage is logged and retried every ``retry_s`` seconds.

    Args:
        consumer_factory: builds the Kafka consumer (default: kafka-python's, from ``settings``).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        book: ProfileBook,
        topic: str | None = None,
        retry_s: float = 1.0,
        consumer_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.settings, self.book = settings, book
        self.topic = topic or profiles_topic(settings.topic_prefix)
        self.retry_s = retry_s
        self._factory = consumer_factory or self._consumer
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="profile-tail", daemon=True)

    def start(self) -> KafkaProfileTail:
        """Start the thread; returns self."""
        self._thread.start()
        return self

    def wait_caught_up(self, timeout_s: float) -> bool:
        """Block until the topic has been read up to its end offsets at start (True), or ``timeout_s`` passed."""
        return self._caught_up.wait(timeout_s)

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer, TopicPartition

        from visearch.shared.kafka import connection_options

        consumer = KafkaConsumer(**connection_options(self.settings), client_id="visearch-profile-tail")
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            consumer.close()
            raise DependencyUnavailableError(f"topic {self.topic} has no partitions yet")
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        return consumer

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                consumer = self._factory()
            except Exception as exc:  # noqa: BLE001 (broker down, topic not created yet: retry)
                log.warning("profile_tail_waiting", topic=self.topic, error=str(exc))
                self._stop.wait(self.retry_s)
                continue
            try:
                self._follow(consumer)
            except Exception as exc:  # noqa: BLE001 (a broken connection: reconnect and re-read)
                log.warning("profile_tail_failed", topic=self.topic, error=str(exc))
                self._stop.wait(self.retry_s)
            finally:
                consumer.close()

    def _follow(self, consumer: Any) -> None:
        ends = consumer.end_offsets(list(consumer.assignment()))
        while not self._stop.is_set():
            for records in consumer.poll(timeout_ms=200, max_records=1000).values():
                for r in records:
                    self.book.apply(Message(r.topic, r.key or b"", r.value or b"", offset=r.offset))
            if not self._caught_up.is_set() and all(consumer.position(tp) >= end for tp, end in ends.items()):
                self._caught_up.set()
                log.info("profiles_loaded", topic=self.topic, profiles=len(self.book), records=self.book.records)

    def close(self) -> None:
        """Stop the thread (within about 0.2 s)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
