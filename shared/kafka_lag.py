"""Consumer lag from the broker's side, and the lag exporter (``visearch serve lag-exporter``).

Lag is what the broker says: each pipeline stage's consumer group (``visearch-<stage>``) and its committed
offsets against the log of its input topic. :class:`LagReader` reads it: the one implementation behind
``visearch topics lag``, :func:`visearch.shared.kafka.group_lag` and the Prometheus collector.

:class:`LagCollector` is a custom collector: at each scrape (reusing a read younger than
``VISEARCH_LAG_EXPORTER_CACHE_S``, waiting at most ``..._TIMEOUT_S`` for a new one) it yields one series per
partition the topics have now, so a rebalance, a stopped stage or a removed stage leaves nothing stale behind,
and the figures keep coming while a stage's consumers are down (in-consumer gauges stopped with them and kept
the partitions a consumer once owned). :func:`main` serves it on ``VISEARCH_METRICS_PORT`` in a process of
its own (no gRPC, no model), with ``/livez`` for probes that must not depend on the broker.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from visearch.shared.config import KafkaSettings, LagExporterSettings, PipelineSettings, ServiceSettings
from visearch.shared.errors import DependencyUnavailableError
from visearch.shared.logging import configure_logging, get_logger
from visearch.shared.metrics import (
    CONSUMER_LAG_RECORDS,
    CONSUMER_LAG_SECONDS,
    LAG_SCRAPE_DURATION,
    LAG_SCRAPE_SUCCESS,
    CollectedMetric,
    start_metrics_server,
)
from visearch.shared.transport import stage_topics

log = get_logger("kafka_lag")


@dataclass(frozen=True)
class LagTarget:
    """A consumer group and the topic it consumes."""

    group: str
    topic: str


def pipeline_lag_targets(settings: KafkaSettings, stages: list[str]) -> list[LagTarget]:
    """Each stage's group (``visearch-<stage>``) on its input topic, in chain order."""
    return [LagTarget(f"visearch-{stage}", t.input) for stage, t in stage_topics(stages, settings.topic_prefix).items()]


@dataclass(frozen=True)
class PartitionLag:
    """One partition of a group's topic, as the broker reported it.

    Attributes:
        start: the log start offset (older records are deleted).
        end: the log end offset (the offset the next record will get).
        committed: the group's committed offset; None when it never committed on this partition.
        oldest_timestamp_ms: the Kafka timestamp of the first record the group has not committed (None when it
            has caught up, or when it was not read).
    """

    group: str
    topic: str
    partition: int
    start: int
    end: int
    committed: int | None
    oldest_timestamp_ms: int | None = None

    @property
    def position(self) -> int:
        """Where the group resumes: its committed offset, or the log start when it has none or retention deleted
        the records it points at (the consumers reset to the earliest offset)."""
        if self.committed is None or self.committed < self.start:
            return self.start
        return self.committed

    @property
    def records(self) -> int:
        """Records waiting for the group (0 when it is at the end, or past it after a topic was recreated)."""
        return max(self.end - self.position, 0)

    def age_s(self, now_s: float) -> float | None:
        """Age of the oldest waiting record at ``now_s`` (epoch seconds): 0 when none waits, None when unknown."""
        if self.records == 0:
            return 0.0
        if self.oldest_timestamp_ms is None:
            return None
        return max(now_s - self.oldest_timestamp_ms / 1000.0, 0.0)


class LagReader:
    """Reads lag from the broker with two long-lived clients (built from the settings' client options, TLS
    and SASL included): a consumer without a group (partitions, log offsets, the first waiting records) and an
    admin client (the groups' committed offsets, all groups in one request per coordinator).

    A failed read closes the clients; the next read connects again. Not thread-safe: one read at a time.

    Args:
        timeout_s: the time limit of the broker calls of one read (connection included).
        oldest_records: also fetch the first uncommitted record of each lagging partition (its timestamp).
    """

    def __init__(self, settings: KafkaSettings, timeout_s: float = 10.0, oldest_records: bool = False) -> None:
        if not settings.bootstrap:
            raise ValueError("VISEARCH_KAFKA_BOOTSTRAP is not set")
        self.settings = settings
        self.timeout_s = timeout_s
        self.oldest_records = oldest_records
        self._consumer: KafkaConsumer | None = None
        self._admin: KafkaAdminClient | None = None

    def _clients(self) -> tuple[KafkaConsumer, KafkaAdminClient]:
        if self._consumer is None or self._admin is None:
            from visearch.shared.kafka import connection_options

            self.close()
            options = connection_options(self.settings)
            timeout_ms = max(int(self.timeout_s * 1000), 1000)
            self._consumer = KafkaConsumer(
                **options,
                client_id="visearch-lag",
                group_id=None,
                enable_auto_commit=False,
                bootstrap_timeout_ms=timeout_ms,
                request_timeout_ms=timeout_ms,
                fetch_max_wait_ms=100,
                max_partition_fetch_bytes=self.settings.max_message_bytes,
                fetch_max_bytes=max(52428800, self.settings.max_message_bytes),
            )
            self._admin = KafkaAdminClient(
                **options,
                client_id="visearch-lag-admin",
                bootstrap_timeout_ms=timeout_ms,
                request_timeout_ms=timeout_ms,
            )
        return self._consumer, self._admin

    def read(self, targets: Sequence[LagTarget]) -> list[PartitionLag]:
        """The lag of every partition of each target's topic (a topic that does not exist has none).

        Raises:
            DependencyUnavailableError: the broker did not answer in time, or refused a request (the Kafka error
                is its cause); ConfigError: TLS or SASL was refused. Nothing was read.
        """
        try:
            return self._read(targets)
        except KafkaError as exc:
            self.close()
            raise DependencyUnavailableError(
                f"consumer lag from Kafka at {self.settings.describe()} not read: {exc}"
            ) from exc
        except Exception:
            self.close()
            raise

    def _read(self, targets: Sequence[LagTarget]) -> list[PartitionLag]:
        deadline = time.monotonic() + self.timeout_s
        consumer, admin = self._clients()
        partitions = {t.topic: sorted(consumer.partitions_for_topic(t.topic) or ()) for t in targets}
        tps = [TopicPartition(topic, p) for topic, ids in partitions.items() for p in ids]
        if not tps:
            return []
        starts = consumer.beginning_offsets(tps, timeout_ms=_remaining_ms(deadline))
        ends = consumer.end_offsets(tps, timeout_ms=_remaining_ms(deadline))
        specs = {t.group: [TopicPartition(t.topic, p) for p in partitions[t.topic]] for t in targets}
        committed = admin.list_group_offsets({g: tp_list for g, tp_list in specs.items() if tp_list})
        lags = []
        for target in targets:
            offsets = committed.get(target.group, {})
            for p in partitions[target.topic]:
                tp = TopicPartition(target.topic, p)
                meta = offsets.get(tp)
                offset = meta.offset if meta is not None and meta.offset >= 0 else None
                lags.append(PartitionLag(target.group, target.topic, p, starts[tp], ends[tp], offset))
        if self.oldest_records:
            waiting = {(lag.topic, lag.partition, lag.position) for lag in lags if lag.records > 0}
            stamps = self._first_timestamps(consumer, waiting, deadline)
            lags = [
                PartitionLag(
                    lag.group,
                    lag.topic,
                    lag.partition,
                    lag.start,
                    lag.end,
                    lag.committed,
                    stamps.get((lag.topic, lag.partition, lag.position)),
                )
                if lag.records > 0
                else lag
                for lag in lags
            ]
        return lags

    @staticmethod
    def _first_timestamps(
        consumer: KafkaConsumer, wanted: set[tuple[str, int, int]], deadline: float
    ) -> dict[tuple[str, int, int], int]:
        """The timestamp of the first record at or after each wanted (topic, partition, position), keyed by it:
        two groups at different positions of one partition each get theirs.

        Records without a timestamp, and partitions that return nothing before ``deadline``, are left out.
        """
        found: dict[tuple[str, int, int], int] = {}
        by_tp: dict[TopicPartition, list[int]] = {}
        for topic, p, pos in sorted(wanted):
            by_tp.setdefault(TopicPartition(topic, p), []).append(pos)
        # One fetch per distinct position: a partition with two positions is read twice, lowest first.
        while by_tp and time.monotonic() < deadline:
            round_tps = {tp: positions_of.pop(0) for tp, positions_of in by_tp.items()}
            by_tp = {tp: rest for tp, rest in by_tp.items() if rest}
            consumer.assign(list(round_tps))
            for tp, pos in round_tps.items():
                consumer.seek(tp, pos)
            pending = set(round_tps)
            while pending and time.monotonic() < deadline:
                batches = consumer.poll(timeout_ms=min(_remaining_ms(deadline), 1000), update_offsets=False)
                for tp, records in batches.items():
                    if tp in pending and records:
                        pending.discard(tp)
                        consumer.pause(tp)
                        stamp = records[0].timestamp
                        if stamp is not None and stamp >= 0:
                            found[(tp.topic, tp.partition, round_tps[tp])] = int(stamp)
            consumer.unsubscribe()
        return found

    def close(self) -> None:
        """Close the clients (a later read connects again)."""
        for client in (self._consumer, self._admin):
            if client is not None:
                try:
                    client.close()
                except Exception as exc:  # noqa: BLE001 (closing a broken client must not hide the first error)
                    log.debug("lag_client_close_failed", error=str(exc))
        self._consumer = self._admin = None


def _remaining_ms(deadline: float) -> int:
    return max(int((deadline - time.monotonic()) * 1000), 1)


@dataclass
class _Snapshot:
    taken_at: float  # monotonic
    ok: bool
    duration_s: float
    lags: list[PartitionLag] = field(default_factory=list)


class LagCollector(Collector):
    """Yields the lag series at scrape time from ``read()``, a read at most ``cache_s`` old.

    A new read runs in a thread of its own, one at a time; a scrape waits for it at most ``timeout_s``. A read
    that fails or is late yields ``visearch_kafka_lag_scrape_success 0`` and no lag series (a late read still
    fills the cache for the next scrape when it ends). A read still running ``stuck_s`` after it started gets
    ``reset()`` called once (e.g. :meth:`LagReader.close`, whose closed clients make the blocked call fail).

    Args:
        read: returns the lag of every partition of the pipeline's groups (e.g. :meth:`LagReader.read`).
        clock: monotonic seconds (cache ages); wall: epoch seconds (record ages).
    """

    def __init__(
        self,
        read: Callable[[], list[PartitionLag]],
        cache_s: float = 10.0,
        timeout_s: float = 5.0,
        reset: Callable[[], None] | None = None,
        stuck_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._read = read
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._reset = reset
        self.stuck_s = stuck_s if stuck_s is not None else max(60.0, 6 * timeout_s)
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._inflight: threading.Thread | None = None
        self._inflight_since = 0.0
        self._reset_called = False

    def describe(self) -> Iterable[Any]:
        """Nothing: registering the collector must not read the broker."""
        return []

    def snapshot(self) -> _Snapshot:
        """The cached read while it is fresh, else a new one (or a failure when it takes over ``timeout_s``)."""
        asked = self._clock()
        with self._lock:
            current = self._snapshot
            if current is not None and asked - current.taken_at < self.cache_s:
                return current
            if self._inflight is None:
                self._inflight = threading.Thread(target=self._refresh, name="lag-read", daemon=True)
                self._inflight_since, self._reset_called = asked, False
                self._inflight.start()
            thread = self._inflight
            stuck = asked - self._inflight_since > self.stuck_s and not self._reset_called
            self._reset_called |= stuck
        if stuck:
            log.warning("lag_read_stuck", running_s=round(asked - self._inflight_since, 1))
            if self._reset is not None:
                self._reset()
        thread.join(self.timeout_s)
        with self._lock:
            current = self._snapshot
        if current is not None and current.taken_at >= asked:
            return current
        log.warning("lag_read_late", timeout_s=self.timeout_s)
        return _Snapshot(self._clock(), ok=False, duration_s=self._clock() - asked)

    def _refresh(self) -> None:
        start = self._clock()
        try:
            lags, ok = self._read(), True
        except Exception as exc:  # noqa: BLE001 (any failure is a failed scrape, reported as such)
            log.warning("lag_read_failed", error=str(exc), error_type=type(exc).__name__)
            lags, ok = [], False
        end = self._clock()
        with self._lock:
            self._snapshot = _Snapshot(end, ok, end - start, lags)
            self._inflight = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The lag series of the partitions read, the age of their oldest waiting records, and the read's
        success and duration."""
        snap = self.snapshot()
        records, ages = _family(CONSUMER_LAG_RECORDS), _family(CONSUMER_LAG_SECONDS)
        now = self._wall()
        for lag in snap.lags if snap.ok else []:
            labels = [lag.topic, lag.group, str(lag.partition)]
            records.add_metric(labels, lag.records)
            age = lag.age_s(now)
            if age is not None:
                ages.add_metric(labels, age)
        success, duration = _family(LAG_SCRAPE_SUCCESS), _family(LAG_SCRAPE_DURATION)
        success.add_metric([], 1.0 if snap.ok else 0.0)
        duration.add_metric([], snap.duration_s)
        yield from (records, ages, success, duration)


def _family(metric: CollectedMetric) -> GaugeMetricFamily:
    return GaugeMetricFamily(metric.name, metric.documentation, labels=list(metric.labels))


def build_registry(
    kafka: KafkaSettings, stages: list[str], settings: LagExporterSettings
) -> tuple[CollectorRegistry, LagReader]:
    """A registry with the lag collector over the pipeline's groups, and the process's own metrics."""
    targets = pipeline_lag_targets(kafka, stages)
    # The reader's calls end a little before the scrape stops waiting, so a broker that is down is reported as
    # a failed read, not a late one.
    reader = LagReader(kafka, timeout_s=0.8 * settings.timeout_s, oldest_records=settings.oldest_record)
    registry = CollectorRegistry()
    registry.register(
        LagCollector(
            lambda: reader.read(targets), cache_s=settings.cache_s, timeout_s=settings.timeout_s, reset=reader.close
        )
    )
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry, reader


def main(settings: ServiceSettings | None = None, stop: threading.Event | None = None) -> int:
    """Serve the lag of the pipeline's groups on ``VISEARCH_METRICS_PORT`` until SIGTERM/SIGINT (or ``stop``).

    Returns the exit code (0).

    Raises:
        SystemExit: VISEARCH_KAFKA_BOOTSTRAP is not set, or VISEARCH_METRICS_PORT is 0.
    """
    settings = settings or ServiceSettings()
    configure_logging("lag-exporter", settings.log_level)
    kafka, pipeline, exporter = KafkaSettings(), PipelineSettings(), LagExporterSettings()
    if not kafka.bootstrap:
        raise SystemExit("the lag exporter reads Kafka: set VISEARCH_KAFKA_BOOTSTRAP (e.g. 127.0.0.1:9092)")
    if not settings.metrics_port:
        raise SystemExit("the lag exporter serves /metrics: set VISEARCH_METRICS_PORT")
    registry, reader = build_registry(kafka, pipeline.stage_list, exporter)
    server = start_metrics_server(settings.metrics_port, settings.grpc_host, registry=registry)
    assert server is not None  # metrics_port checked above
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("lag_exporter_stopping", signal=signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    log.info(
        "lag_exporter_started",
        address=f"{settings.grpc_host}:{server.server_port}",
        kafka=kafka.describe(),
        groups=[t.group for t in pipeline_lag_targets(kafka, pipeline.stage_list)],
        cache_s=exporter.cache_s,
        timeout_s=exporter.timeout_s,
    )
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        reader.close()
        log.info("lag_exporter_stopped")
    return 0
