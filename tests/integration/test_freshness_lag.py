"""Freshness and lag over the real chain: a real Apache Kafka broker (deploy/kafka/kafka.sh, started and stopped
by the same module fixture as tests/integration/test_kafka_pipeline.py: only when this module started it), the
embedding and indexer stages and the lag exporter as processes, and a real Prometheus (deploy/tools/
install-prometheus.sh) scraping them every second with the chart's rules (helm/visearch/files/alerts.yaml) loaded.

- The indexer's ``visearch_ingest_freshness_seconds`` counts every indexed event once, with values between 0 and
  the time the test saw them indexed.
- With the embedding stage stopped, the lag of its group keeps being exported, by the exporter (the stage's own
  process is gone), and grows as events arrive; the age of its oldest waiting record is exported too, and the
  backlog alert's expression is true on the scraped data (VisearchIngestBacklogTooOld pending: its `for` is covered
  by promtool, helm/visearch/files/alerts_test.yaml). Once the stage is back, the events' freshness fires the
  freshness SLO's fast-burn expression (VisearchIngestFreshnessSLOBurn pending).

Waiting 10 minutes is no test: the events published while the stage is down carry an event_time and a Kafka record
timestamp 20 minutes in the past, i.e. they were published 20 minutes ago as far as every clock involved can tell.
The store is Milvus Lite (a file, the project's default), which the indexer writes to as it would to Milvus
standalone: the freshness clock stops when that write returns.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
import uuid

import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.stack import (
    KAFKA_BOOTSTRAP,
    ROOT,
    ExporterProcess,
    PrometheusProcess,
    ScriptManaged,
    ServiceProcess,
    wait_until,
)
from visearch.embedded import item_to_event
from visearch.offline.datasets import fashion_mnist
from visearch.shared.config import KafkaSettings
from visearch.shared.kafka import create_topics, images_topic
from visearch.shared.pipeline import encode_event

pytestmark = [pytest.mark.kafka, pytest.mark.models, pytest.mark.slow]

STAGES = ["embedding", "indexer"]
PREFIX = f"fr{uuid.uuid4().hex[:8]}"
NAMESPACE = "itest"  # the target labels the chart's ServiceMonitor adds (namespace, release)
ALERTS = ROOT / "helm" / "visearch" / "files" / "alerts.yaml"
STALE_S = 1200  # how old the events published while the stage is down are
SCOPE = f'namespace="{NAMESPACE}",release="{PREFIX}"'


@pytest.fixture(scope="module")
def kafka_settings():
    """The broker via deploy/kafka/kafka.sh (stopped afterwards only if this module started it), and this module's
    own topics."""
    kafka = ScriptManaged("kafka")
    kafka.up()
    settings = KafkaSettings(bootstrap=KAFKA_BOOTSTRAP, topic_prefix=PREFIX, partitions=3)
    assert set(create_topics(settings, STAGES).values()) == {"created"}
    yield settings
    kafka.down()


@pytest.fixture(scope="module")
def stack(built_models, kafka_settings, tmp_path_factory):
    """embedding, indexer and the lag exporter as processes, and Prometheus scraping them with the chart's rules."""
    tmp = tmp_path_factory.mktemp("freshness")
    subprocess.run(["bash", str(ROOT / "deploy" / "tools" / "install-prometheus.sh")], check=True, timeout=300)
    env = {
        "VISEARCH_KAFKA_BOOTSTRAP": KAFKA_BOOTSTRAP,
        "VISEARCH_KAFKA_TOPIC_PREFIX": PREFIX,
        "VISEARCH_KAFKA_POLL_TIMEOUT_S": "0.5",
        "VISEARCH_KAFKA_RETRY_MAX_S": "5",
        "VISEARCH_MILVUS_URI": str(tmp / "freshness.db"),
        "VISEARCH_PIPELINE_STAGES": ",".join(STAGES),
        "VISEARCH_LAG_EXPORTER_CACHE_S": "1",
        "VISEARCH_LOG_LEVEL": "info",
    }
    procs = {
        "embedding": ServiceProcess("embedding", env, tmp),
        "indexer": ServiceProcess("indexer", env, tmp),
        "lag-exporter": ExporterProcess(env, tmp),
    }
    prometheus = None
    try:
        for proc in procs.values():
            proc.start()
        labels = {"namespace": NAMESPACE, "release": PREFIX}
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {
                    "job_name": f"visearch-{name}",
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{proc.metrics_port}"], "labels": {**labels, "service": name}}
                    ],
                }
                for name, proc in procs.items()
            ],
        }
        prometheus = PrometheusProcess(config, tmp)
        port = prometheus.start()
        wait_until(lambda: len(query(port, f"up{{{SCOPE}}} == 1")) == 3, 60, what="3 targets up")
        yield {"port": port, "procs": procs}
    finally:
        if prometheus is not None:
            prometheus.stop()
        for proc in procs.values():
            proc.stop()


def api(port: int, path: str, **params) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)["data"]


def query(port: int, promql: str) -> list[dict]:
    return api(port, "query", query=promql)["result"]


def value(port: int, promql: str) -> float | None:
    result = query(port, promql)
    return float(result[0]["value"][1]) if result else None


def alert(port: int, name: str, **labels: str) -> dict | None:
    """The alert ``name`` with these labels, pending or firing, or None."""
    for a in api(port, "alerts")["alerts"]:
        if a["labels"]["alertname"] == name and all(a["labels"].get(k) == v for k, v in labels.items()):
            return a
    return None


def freshness(proc: ServiceProcess) -> dict[str, float]:
    """The indexer's own exposition of visearch_ingest_freshness_seconds{kind="upsert"}: le -> cumulative count,
    plus "count" and "sum"."""
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "visearch_ingest_freshness_seconds":
            continue
        for sample in family.samples:
            if sample.labels.get("kind") != "upsert":
                continue
            if sample.name.endswith("_bucket"):
                out[sample.labels["le"]] = sample.value
            elif sample.name.endswith(("_count", "_sum")):
                out[sample.name.rsplit("_", 1)[1]] = sample.value
    return out


def fashion_events(n: int, offset: int):
    return [item_to_event(item, "freshness") for item in fashion_mnist("train", limit=n, offset=offset)]


def publish(settings: KafkaSettings, events, age_s: float = 0.0) -> None:
    """Publish ``events`` as an upstream system would; with ``age_s``, as it would have ``age_s`` ago (the event's
    event_time and the Kafka record's timestamp both say so)."""
    producer = KafkaProducer(**settings.client_options(), acks="all")
    try:
        stamp = time.time() - age_s
        for event in events:
            if age_s:
                event.event_time.FromNanoseconds(int(stamp * 1e9))
            key, value_, headers = encode_event(event)
            producer.send(
                images_topic(settings),
                value_,
                key=key,
                headers=[(k, v.encode()) for k, v in headers.items()],
                timestamp_ms=int(stamp * 1000),
            )
        producer.flush(30)
    finally:
        producer.close()


def test_freshness_histogram_counts_each_indexed_event_with_its_publish_to_searchable_time(stack, kafka_settings):
    port, indexer = stack["port"], stack["procs"]["indexer"]
    before = freshness(indexer)
    assert before.get("count") == 0.0, before  # the series exist from the start, at 0
    n = 30
    start = time.time()
    publish(kafka_settings, fashion_events(n, offset=9000))
    after = wait_until(lambda: (f := freshness(indexer)).get("count", 0) >= n and f, 300, what=f"{n} events indexed")
    elapsed = time.time() - start
    time.sleep(3)  # nothing more arrives: each event is observed once
    after = freshness(indexer)
    mean = after["sum"] / after["count"]
    print(f"{n} events: freshness mean {mean:.2f} s, all indexed {elapsed:.1f} s after publishing began")
    assert after["count"] == n
    assert 0 < mean <= elapsed
    assert after["+Inf"] == n and after["600.0"] == n  # all within the objective
    # none longer than the test waited: the first bucket bound above that time holds them all
    bound = min((b for b in after if b not in ("count", "sum", "+Inf") and float(b) >= elapsed), key=float)
    assert after[bound] == n, (bound, after)
    # Prometheus scraped the same: the SLI (share of events later than 600 s) is 0 over real data.
    wait_until(lambda: value(port, f"sum(visearch_ingest_freshness_seconds_count{{{SCOPE}}})") == n, 30, what="scraped")
    wait_until(
        lambda: value(port, f"visearch:ingest_stale_ratio:rate5m{{{SCOPE}}}") == 0, 30, what="stale ratio recorded"
    )


def test_with_a_stage_down_lag_is_still_exported_and_the_freshness_alerts_fire(stack, kafka_settings):
    port, procs = stack["port"], stack["procs"]
    group, topic = "visearch-embedding", images_topic(kafka_settings)
    lag = f'sum(visearch_kafka_consumer_lag_records{{{SCOPE},group="{group}"}})'
    assert procs["embedding"].stop() == 0  # its consumers leave the group; its /metrics is gone
    wait_until(lambda: value(port, f'up{{{SCOPE},service="embedding"}}') == 0, 30, what="embedding down")
    counted = freshness(procs["indexer"])["count"]

    stale = 20
    publish(kafka_settings, fashion_events(stale, offset=9100), age_s=STALE_S)
    wait_until(lambda: value(port, lag) == stale, 60, what=f"lag {stale} exported while the stage is down")
    sources = {r["metric"]["service"] for r in query(port, f"visearch_kafka_consumer_lag_records{{{SCOPE}}}")}
    assert sources == {"lag-exporter"}, sources  # nobody else exports lag
    assert value(port, f"visearch_kafka_lag_scrape_success{{{SCOPE}}}") == 1
    per_partition = query(port, f'visearch_kafka_consumer_lag_records{{{SCOPE},group="{group}"}}')
    assert {r["metric"]["partition"] for r in per_partition} == {"0", "1", "2"}
    assert {r["metric"]["topic"] for r in per_partition} == {topic}

    # The age of the oldest waiting record: 20 minutes, and rising with the clock while nothing is consumed.
    age = f'max(visearch_kafka_consumer_lag_seconds{{{SCOPE},group="{group}"}})'
    first = wait_until(lambda: value(port, age), 30, what="oldest record age")
    assert STALE_S - 5 <= first <= STALE_S + 120, first
    time.sleep(5)
    assert value(port, age) >= first + 3

    # More events while the stage is still down: the exported lag follows (an in-consumer gauge would be frozen).
    publish(kafka_settings, fashion_events(5, offset=9200))
    wait_until(lambda: value(port, lag) == stale + 5, 60, what="lag follows new events while the stage is down")

    backlog = wait_until(
        lambda: alert(port, "VisearchIngestBacklogTooOld", group=group, namespace=NAMESPACE, release=PREFIX),
        60,
        what="VisearchIngestBacklogTooOld active",
    )
    assert backlog["state"] in ("pending", "firing") and backlog["labels"]["topic"] == topic
    print(f"stage down: lag {stale + 5} exported by the exporter, oldest record {first:.0f} s; backlog alert pending")

    # The stage comes back: the stale events are indexed 20 minutes after their publication.
    procs["embedding"].start()
    wait_until(lambda: value(port, lag) == 0, 300, what="lag back to 0")
    done = wait_until(
        lambda: (f := freshness(procs["indexer"]))["count"] >= counted + stale + 5 and f, 120, what="indexed"
    )
    assert done["count"] == counted + stale + 5
    assert done["900.0"] == counted + 5  # the fresh ones (this test's 5, the first test's) within 15 minutes
    assert done["1800.0"] - done["900.0"] == stale  # the stale ones: 1,200 s and their indexing time
    assert done["1800.0"] == done["+Inf"]
    burn = wait_until(
        lambda: alert(port, "VisearchIngestFreshnessSLOBurn", namespace=NAMESPACE, release=PREFIX),
        60,
        what="VisearchIngestFreshnessSLOBurn active",
    )
    ratio = value(port, f"visearch:ingest_stale_ratio:rate5m{{{SCOPE}}}")
    print(f"stage back: stale ratio over 5m {ratio:.2f}; freshness SLO burn alert {burn['state']}")
    assert ratio is not None and ratio > 14.4 * 0.01
    # With the backlog consumed, the backlog alert's expression is false again.
    wait_until(
        lambda: alert(port, "VisearchIngestBacklogTooOld", group=group, namespace=NAMESPACE) is None,
        60,
        what="backlog alert resolved",
    )
