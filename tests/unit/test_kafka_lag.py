"""The lag exporter's collector (visearch.shared.kafka_lag): series exactly as the broker reported them at each
scrape (nothing stale after a rebalance or a partition that went away), a short cache, a time limit, and
``visearch_kafka_lag_scrape_success`` 0 when the broker cannot be read. The broker is faked here; the
integration test tests/integration/test_freshness_lag.py reads a real one."""

from __future__ import annotations

import threading
import time
import urllib.request
from wsgiref.simple_server import make_server

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from visearch.shared.config import KafkaSettings
from visearch.shared.kafka_lag import (
    LagCollector,
    LagTarget,
    PartitionLag,
    pipeline_lag_targets,
)
from visearch.shared.metrics import metrics_app

GROUP, TOPIC = "visearch-embedding", "visearch.detected.v1"


def lag(partition: int, end: int, committed: int | None, start: int = 0, stamp_ms: int | None = None) -> PartitionLag:
    return PartitionLag(GROUP, TOPIC, partition, start, end, committed, stamp_ms)


class FakeBroker:
    """``read()`` returns what ``lags`` holds now; ``fail`` raises, ``block`` holds the read until set."""

    def __init__(self, lags: list[PartitionLag]) -> None:
        self.lags = lags
        self.reads = 0
        self.fail: Exception | None = None
        self.block: threading.Event | None = None

    def read(self) -> list[PartitionLag]:
        self.reads += 1
        if self.block is not None:
            self.block.wait(10)
        if self.fail is not None:
            raise self.fail
        return list(self.lags)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scrape(collector: LagCollector) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """metric name -> {sorted label pairs: value}, as Prometheus would parse the exposition."""
    registry = CollectorRegistry()
    registry.register(collector)
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def series(partition: int) -> tuple[tuple[str, str], ...]:
    return (("group", GROUP), ("partition", str(partition)), ("topic", TOPIC))


def test_partition_lag_position_records_and_age():
    assert lag(0, end=10, committed=4).records == 6
    assert lag(0, end=10, committed=None).records == 10  # never committed: from the log start
    assert lag(0, end=10, committed=None, start=7).records == 3
    assert lag(0, end=10, committed=2, start=7).records == 3  # retention deleted what it pointed at
    assert lag(0, end=3, committed=5).records == 0  # a recreated topic: never negative
    assert lag(0, end=10, committed=10, stamp_ms=1).age_s(5000.0) == 0.0  # caught up: 0, whatever the stamp
    assert lag(0, end=10, committed=4).age_s(5000.0) is None  # waiting, timestamp not read: unknown
    assert lag(0, end=10, committed=4, stamp_ms=4_000_000).age_s(5000.0) == 1000.0
    assert lag(0, end=10, committed=4, stamp_ms=6_000_000).age_s(5000.0) == 0.0  # a producer clock ahead


def test_targets_are_each_stage_group_on_its_input_topic():
    settings = KafkaSettings(bootstrap="127.0.0.1:9092", topic_prefix="p")
    assert pipeline_lag_targets(settings, ["detection", "embedding", "indexer"]) == [
        LagTarget("visearch-detection", "p.images.v1"),
        LagTarget("visearch-embedding", "p.detected.v1"),
        LagTarget("visearch-indexer", "p.embedded.v1"),
    ]


def test_each_scrape_yields_exactly_the_partitions_read_no_stale_series():
    """A partition that is gone from the read (topic recreated with fewer partitions, a stage removed) is gone
    from the scrape: the series come from the read, not from gauges that keep every label set ever set."""
    clock = Clock()
    broker = FakeBroker([lag(0, 50, 40), lag(1, 70, 40), lag(2, 90, 40)])
    collector = LagCollector(broker.read, cache_s=10, timeout_s=1, clock=clock, wall=lambda: 0.0)
    first = scrape(collector)
    assert first["visearch_kafka_consumer_lag_records"] == {series(0): 10, series(1): 30, series(2): 50}
    broker.lags = [lag(0, 55, 55)]
    clock.now += 11
    second = scrape(collector)
    assert second["visearch_kafka_consumer_lag_records"] == {series(0): 0}
    assert second["visearch_kafka_consumer_lag_seconds"] == {series(0): 0}
    assert second["visearch_kafka_lag_scrape_success"] == {(): 1}


def test_reads_are_cached_for_cache_s():
    clock = Clock()
    broker = FakeBroker([lag(0, 5, 0)])
    collector = LagCollector(broker.read, cache_s=10, timeout_s=1, clock=clock)
    scrape(collector)
    clock.now += 9
    scrape(collector)
    assert broker.reads == 1
    clock.now += 2
    scrape(collector)
    assert broker.reads == 2


def test_age_of_the_oldest_waiting_record_grows_between_reads():
    """The age is computed at scrape time from the record's timestamp: a stalled group's age keeps rising."""
    clock, wall = Clock(), Clock()
    wall.now = 10_000.0
    broker = FakeBroker([lag(0, 5, 2, stamp_ms=9_400_000), lag(1, 5, 5, stamp_ms=9_000_000)])
    collector = LagCollector(broker.read, cache_s=10, timeout_s=1, clock=clock, wall=wall)
    assert scrape(collector)["visearch_kafka_consumer_lag_seconds"] == {series(0): 600, series(1): 0}
    wall.now += 5
    assert scrape(collector)["visearch_kafka_consumer_lag_seconds"] == {series(0): 605, series(1): 0}


def test_a_failed_read_reports_failure_and_no_lag_series_then_recovers():
    clock = Clock()
    broker = FakeBroker([lag(0, 5, 0)])
    broker.fail = ConnectionError("broker down")
    collector = LagCollector(broker.read, cache_s=10, timeout_s=1, clock=clock)
    down = scrape(collector)
    assert down["visearch_kafka_lag_scrape_success"] == {(): 0}
    assert "visearch_kafka_consumer_lag_records" not in down
    broker.fail = None
    clock.now += 11
    up = scrape(collector)
    assert up["visearch_kafka_lag_scrape_success"] == {(): 1}
    assert up["visearch_kafka_consumer_lag_records"] == {series(0): 5}


def test_a_slow_read_fails_the_scrape_within_the_timeout_and_fills_the_cache_later():
    broker = FakeBroker([lag(0, 8, 1)])
    broker.block = threading.Event()
    collector = LagCollector(broker.read, cache_s=60, timeout_s=0.3)
    start = time.monotonic()
    late = scrape(collector)
    assert time.monotonic() - start < 2
    assert late["visearch_kafka_lag_scrape_success"] == {(): 0}
    assert "visearch_kafka_consumer_lag_records" not in late
    scrape(collector)  # still blocked: no second read starts (one read at a time)
    assert broker.reads == 1
    broker.block.set()
    deadline = time.monotonic() + 5
    while collector._inflight is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    done = scrape(collector)  # the late read, now cached
    assert done["visearch_kafka_lag_scrape_success"] == {(): 1}
    assert done["visearch_kafka_consumer_lag_records"] == {series(0): 7}
    assert broker.reads == 1


def test_a_stuck_read_is_reset_once():
    broker = FakeBroker([])
    broker.block = threading.Event()
    resets: list[float] = []
    clock = Clock()
    collector = LagCollector(
        broker.read, cache_s=10, timeout_s=0.05, reset=lambda: resets.append(clock.now), stuck_s=30, clock=clock
    )
    scrape(collector)
    clock.now += 20
    scrape(collector)
    assert resets == []
    clock.now += 20
    scrape(collector)
    scrape(collector)
    assert resets == [1040.0]
    broker.block.set()


def test_registering_the_collector_reads_nothing():
    broker = FakeBroker([])
    CollectorRegistry().register(LagCollector(broker.read))
    assert broker.reads == 0


def test_services_export_no_lag_gauge_of_their_own():
    """Only the lag exporter exports lag: the consumers' own per-partition gauge (never removed after a
    rebalance, gone when the stage is down) no longer exists in the services' registry."""
    import visearch.shared.kafka  # noqa: F401 (the transport the stage workers use)

    names = {metric.name for metric in REGISTRY.collect()}
    assert "visearch_kafka_consumer_lag_records" not in names
    assert "visearch_ingest_freshness_seconds" in names


@pytest.fixture
def exporter_url():
    broker = FakeBroker([lag(0, 3, 1)])
    broker.block = threading.Event()  # a broker that never answers
    registry = CollectorRegistry()
    registry.register(LagCollector(broker.read, timeout_s=0.2))
    server = make_server("127.0.0.1", 0, metrics_app(registry=registry))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", broker
    broker.block.set()
    server.shutdown()
    server.server_close()


def test_exporter_livez_answers_without_the_broker_and_metrics_report_the_failure(exporter_url):
    url, broker = exporter_url
    with urllib.request.urlopen(f"{url}/livez", timeout=5) as response:
        assert response.status == 200 and response.read() == b"ok\n"
    assert broker.reads == 0
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "visearch_kafka_lag_scrape_success 0.0" in text
