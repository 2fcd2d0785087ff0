"""Kafka transport (kafka-python) and topic administration.

``KafkaTransport`` implements :class:`visearch.shared.transport.Transport` over a real broker: one
producer (acks=all, so a flushed message is on every in-sync replica) and one consumer per
(topic, group) with auto-commit off: the stage worker commits explicitly after its outputs are
flushed, which gives at-least-once delivery.

Every client here is built from :func:`connection_options`: the settings' bootstrap, TLS and SASL
options, after a check of TLS and SASL on a connection of its own (:mod:`visearch.shared.kafka_probe`),
so a wrong password or an untrusted certificate is a ConfigError at once, not a 30 s bootstrap timeout
that a worker would retry forever.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, MessageSizeTooLargeError, TopicAlreadyExistsError
from kafka.producer.future import FutureRecordMetadata

from visearch.shared.config import KafkaClientOptions, KafkaSettings
from visearch.shared.errors import DependencyUnavailableError, InvalidEventError
from visearch.shared.kafka_probe import check_connection
from visearch.shared.logging import get_logger, register_secret
from visearch.shared.metrics import RECORDS_CONSUMED, RECORDS_PRODUCED
from visearch.shared.profile_topic import PROFILES_TOPIC_CONFIG, profiles_topic
from visearch.shared.transport import Message, dlq_topic, feedback_topic, topic_name

if TYPE_CHECKING:
    from visearch.shared.pipeline import Stage

log = get_logger("kafka")


def connection_options(settings: KafkaSettings) -> KafkaClientOptions:
    """``settings.client_options()`` (bootstrap, TLS, SASL) once the TLS handshake and SASL authentication
    have been checked on a connection of their own (nothing to check for PLAINTEXT).

    Raises:
        ConfigError: TLS or SASL failed (an untrusted certificate, a wrong password, user or mechanism): the
            message says which, with the address, protocol, mechanism and user.
        DependencyUnavailableError: no bootstrap server answered (transient: retry).
    """
    check_connection(settings)
    options = settings.client_options()
    for secret in (options["sasl_plain_password"], options["ssl_password"]):
        if secret:
            register_secret(secret)  # cut out of any log line that would carry it (e.g. a client's error)
    return options


class KafkaTransport:
    """Transport over Kafka. Not shared between threads: each worker owns one.

    Raises:
        DependencyUnavailableError: the broker cannot be reached or a produce/commit fails; the
            worker treats it as transient (back off, rewind to committed offsets, retry).
        ConfigError: at creation, TLS or SASL failed (:func:`connection_options`); permanent.
    """

    def __init__(self, settings: KafkaSettings, client_id: str = "visearch") -> None:
        if not settings.bootstrap:
            raise ValueError("VISEARCH_KAFKA_BOOTSTRAP is not set")
        self.settings = settings
        self.client_id = client_id
        self._consumers: dict[tuple[str, str], KafkaConsumer] = {}
        self._pending: list[FutureRecordMetadata] = []
        self._options = connection_options(settings)
        try:
            self._producer = KafkaProducer(
                **self._options,
                client_id=client_id,
                acks="all",
                linger_ms=5,
                max_request_size=settings.max_message_bytes,
                retries=5,
                request_timeout_ms=30000,
            )
        except KafkaError as exc:
            raise DependencyUnavailableError(f"Kafka at {settings.describe()} unreachable: {exc}") from exc

    def _consumer(self, topic: str, group: str) -> KafkaConsumer:
        consumer = self._consumers.get((topic, group))
        if consumer is None:
            consumer = KafkaConsumer(
                topic,
                **self._options,
                group_id=group,
                client_id=self.client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self.settings.max_poll_records,
                session_timeout_ms=self.settings.session_timeout_ms,
                max_poll_interval_ms=self.settings.max_poll_interval_ms,
                fetch_max_bytes=max(52428800, self.settings.max_message_bytes),
                max_partition_fetch_bytes=self.settings.max_message_bytes,
            )
            self._consumers[(topic, group)] = consumer
        return consumer

    def produce(self, topic: str, key: bytes, value: bytes | None, headers: dict[str, str]) -> None:  # noqa: D102
        try:
            future = self._producer.send(
                topic, key=key, value=value, headers=[(k, v.encode()) for k, v in headers.items()]
            )
        except MessageSizeTooLargeError as exc:  # permanent: retrying the same message cannot help
            raise InvalidEventError(
                f"message for {topic} is larger than VISEARCH_KAFKA_MAX_MESSAGE_BYTES="
                f"{self.settings.max_message_bytes}: {exc}",
                reason="message_too_large",
            ) from exc
        except KafkaError as exc:
            raise DependencyUnavailableError(f"produce to {topic} failed: {exc}") from exc
        self._pending.append(future)
        RECORDS_PRODUCED.labels(topic=topic).inc()
        if len(self._pending) >= 10_000:  # a producer that never flushes (impression logging) stays bounded
            self.flush()

    def flush(self) -> None:
        """Wait until every produced message is acknowledged by the broker (acks=all); raise if any failed."""
        try:
            self._producer.flush(timeout=60)
            for future in self._pending:
                future.get(timeout=0)
        except KafkaError as exc:
            raise DependencyUnavailableError(f"produce not acknowledged: {exc}") from exc
        finally:
            self._pending.clear()

    def poll(self, topic: str, group: str, max_records: int, timeout_s: float = 0.0) -> list[Message]:  # noqa: D102
        consumer = self._consumer(topic, group)
        try:
            batches = consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            raise DependencyUnavailableError(f"poll of {topic} failed: {exc}") from exc
        messages = [
            Message(
                topic=r.topic,
                key=r.key or b"",
                value=r.value or b"",
                headers={k: (v or b"").decode("utf-8", "replace") for k, v in (r.headers or [])},
                offset=r.offset,
                partition=r.partition,
                timestamp_ms=r.timestamp if r.timestamp is not None else -1,
            )
            for records in batches.values()
            for r in records
        ]
        if messages:
            RECORDS_CONSUMED.labels(topic=topic, group=group).inc(len(messages))
        return messages

    def commit(self, topic: str, group: str) -> None:  # noqa: D102
        consumer = self._consumer(topic, group)
        try:
            consumer.commit()
        except KafkaError as exc:
            raise DependencyUnavailableError(f"commit of {topic} for {group} failed: {exc}") from exc

    def rewind_to_committed(self, topic: str, group: str) -> None:  # noqa: D102
        consumer = self._consumers.get((topic, group))
        if consumer is None:
            return
        for tp in consumer.assignment():
            committed = consumer.committed(tp)
            if committed is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)

    def lag(self, topic: str, group: str) -> int:
        """Messages in ``topic`` not committed by ``group`` (end offset − committed, summed over partitions)."""
        return sum(group_lag(self.settings, topic, group).values())

    def close(self) -> None:  # noqa: D102
        for consumer in self._consumers.values():
            consumer.close(autocommit=False)
        self._consumers.clear()
        self._producer.close(timeout=10)


def group_lag(settings: KafkaSettings, topic: str, group: str) -> dict[int, int]:
    """Lag per partition of ``group`` on ``topic``: end offset minus committed offset (the log start if none), as
    the lag exporter and `visearch topics lag` read it (:class:`visearch.shared.kafka_lag.LagReader`).

    Raises:
        DependencyUnavailableError: the broker did not answer. ConfigError: TLS or SASL refused.
    """
    from visearch.shared.kafka_lag import LagReader, LagTarget

    reader = LagReader(settings)
    try:
        return {lag.partition: lag.records for lag in reader.read([LagTarget(group, topic)])}
    finally:
        reader.close()


def pipeline_topics(settings: KafkaSettings, stages: list[str]) -> list[str]:
    """Every topic the configured chain uses (inputs and outputs), without DLQs."""
    from visearch.shared.transport import stage_topics

    names = []
    for topics in stage_topics(stages, settings.topic_prefix).values():
        for name in (topics.input, topics.output):
            if name and name not in names:
                names.append(name)
    return names


def create_topics(settings: KafkaSettings, stages: list[str]) -> dict[str, str]:
    """Create the chain's topics and their ``.dlq`` topics, the feedback topic (learning to rank, no DLQ) and the
    compacted user-profiles topic (personalisation), with partitions and retention from settings.

    Idempotent: existing topics are left as they are. Returns topic -> "created" | "exists".
    """
    admin = KafkaAdminClient(**connection_options(settings), client_id="visearch-admin")
    try:
        existing = set(admin.list_topics())
        wanted = []
        for name in pipeline_topics(settings, stages):
            for topic, retention in ((name, settings.retention_ms), (dlq_topic(name), settings.dlq_retention_ms)):
                wanted.append(
                    NewTopic(
                        topic,
                        num_partitions=settings.partitions,
                        replication_factor=settings.replication_factor,
                        topic_configs={
                            "retention.ms": str(retention),
                            "max.message.bytes": str(settings.max_message_bytes),
                        },
                    )
                )
        wanted.append(
            NewTopic(
                feedback_topic(settings.topic_prefix),
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs={"retention.ms": str(settings.retention_ms)},
            )
        )
        wanted.append(  # user profiles (personalisation): the latest value per user_id, tombstones delete
            NewTopic(
                profiles_topic(settings.topic_prefix),
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=PROFILES_TOPIC_CONFIG,
            )
        )
        result = {}
        for new in wanted:
            if new.name in existing:
                result[new.name] = "exists"
                continue
            try:
                admin.create_topics([new])
                result[new.name] = "created"
            except TopicAlreadyExistsError:
                result[new.name] = "exists"
        return result
    finally:
        admin.close()


def images_topic(settings: KafkaSettings) -> str:
    """The topic upstream systems publish ImageEvents to."""
    return topic_name(settings.topic_prefix, "images")


def stage_worker_loop(stage: Stage, settings: KafkaSettings, stages: list[str]) -> Callable[[threading.Event], None]:
    """A ``run(stop)`` callable that consumes the stage's input topic until ``stop`` is set.

    It connects (retrying with backoff while the broker is unreachable; a TLS or SASL failure, a
    ConfigError, is not retried: the worker stops at once with its reason, and so does the process),
    runs a StageWorker with the DLQ policy from settings, and closes the clients after the last commit.
    """
    from tenacity import Retrying, retry_if_exception_type, wait_exponential_jitter

    from visearch.shared.pipeline import DlqPolicy, StageWorker
    from visearch.shared.transport import stage_topics

    topics = stage_topics(stages, settings.topic_prefix)[stage.name]

    def run(stop: threading.Event) -> None:
        def backoff(seconds: float) -> None:  # cut short when stopped
            stop.wait(seconds)

        connect = Retrying(
            retry=retry_if_exception_type((DependencyUnavailableError, KafkaError)),
            wait=wait_exponential_jitter(multiplier=settings.retry_initial_s, max=settings.retry_max_s),
            stop=lambda _s: stop.is_set(),
            sleep=backoff,
            reraise=True,
        )
        transport = connect(KafkaTransport, settings, f"visearch-{stage.name}")
        worker = StageWorker(
            stage,
            transport,
            topics.input,
            topics.output,
            batch_size=settings.max_poll_records,
            policy=DlqPolicy(settings.dlq_max_consecutive, settings.dlq_max_ratio, settings.dlq_window),
            poll_timeout_s=settings.poll_timeout_s,
            max_message_bytes=settings.max_message_bytes,
        )
        log.info("worker_started", stage=stage.name, input=topics.input, output=topics.output, group=worker.group)
        try:
            worker.run(stop, settings.retry_initial_s, settings.retry_max_s)
        finally:
            transport.close()
            log.info("worker_stopped", stage=stage.name)

    return run
