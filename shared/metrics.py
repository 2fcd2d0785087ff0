"""Prometheus metrics every service exports (names carry units; labels are low-cardinality).

The registry is the prometheus_client default, served on ``/metrics`` by :func:`start_metrics_server`.
The Kafka lag series are not here as objects but as :class:`CollectedMetric` descriptions: the lag
exporter's collector (:mod:`visearch.shared.kafka_lag`) reads them from the broker at each scrape.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

STAGE_SECONDS = Histogram(
    "visearch_stage_duration_seconds",
    "Time a pipeline stage spends on one batch, seconds.",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
STAGE_ITEMS = Counter(
    "visearch_stage_items_total",
    "Items a pipeline stage finished, by outcome (ok, failed).",
    ["stage", "outcome"],
)
STAGE_ERRORS = Counter(
    "visearch_stage_errors_total",
    "Items a stage could not process, by reason (also the DLQ reason).",
    ["stage", "reason"],
)
INFERENCE_SECONDS = Histogram(
    "visearch_inference_duration_seconds",
    "Model inference call latency, seconds.",
    ["model", "runner"],
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_BATCH_SIZE = Histogram(
    "visearch_inference_batch_size",
    "Items per model inference call.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
MILVUS_SECONDS = Histogram(
    "visearch_milvus_request_duration_seconds",
    "Milvus call latency, seconds.",
    ["operation"],
    buckets=_LATENCY_BUCKETS,
)
GRPC_SECONDS = Histogram(
    "visearch_grpc_server_handling_seconds",
    "gRPC method handling time, seconds (labels as go-grpc-prometheus).",
    ["grpc_service", "grpc_method", "grpc_code"],
    buckets=_LATENCY_BUCKETS,
)

STAGE_BATCH_SIZE = Histogram(
    "visearch_stage_batch_size",
    "Messages per batch a stage worker processed.",
    ["stage"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
DLQ_MESSAGES = Counter(
    "visearch_dlq_messages_total",
    "Messages sent to a dead-letter topic, by source topic and reason.",
    ["topic", "reason"],
)
STAGE_RETRIES = Counter(
    "visearch_stage_retries_total",
    "Batches retried after a transient failure, by stage and reason.",
    ["stage", "reason"],
)
RECORDS_CONSUMED = Counter(
    "visearch_kafka_records_consumed_total",
    "Records polled from Kafka.",
    ["topic", "group"],
)
RECORDS_PRODUCED = Counter(
    "visearch_kafka_records_produced_total",
    "Records sent to Kafka (DLQ included).",
    ["topic"],
)
# Publish-to-searchable: seconds to hours (a backlog drains in minutes, a stopped stage for hours). 600 s is the
# freshness objective's threshold (docs/operations.md#slos): a bucket bound, so the SLO ratio is exact.
_FRESHNESS_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)
INGEST_FRESHNESS = Histogram(
    "visearch_ingest_freshness_seconds",
    "Time from an event's publication (its event_time, else its Kafka record's timestamp on the images topic) "
    "to the moment the indexer's Milvus write returned, seconds, by event kind (upsert, delete, attribute_update).",
    ["kind"],
    buckets=_FRESHNESS_BUCKETS,
)


@dataclass(frozen=True)
class CollectedMetric:
    """A gauge a custom collector yields at scrape time (its series are exactly what it read, none left over)."""

    name: str
    documentation: str
    labels: tuple[str, ...] = ()


_LAG_LABELS = ("topic", "group", "partition")
CONSUMER_LAG_RECORDS = CollectedMetric(
    "visearch_kafka_consumer_lag_records",
    "Records of the partition the stage's consumer group has not committed: end offset minus committed offset "
    "(the log start when the group never committed), read from the broker by the lag exporter.",
    _LAG_LABELS,
)
CONSUMER_LAG_SECONDS = CollectedMetric(
    "visearch_kafka_consumer_lag_seconds",
    "Age of the oldest record the group has not committed on the partition (now minus its Kafka timestamp), "
    "seconds; 0 when the group has caught up.",
    _LAG_LABELS,
)
LAG_SCRAPE_SUCCESS = CollectedMetric(
    "visearch_kafka_lag_scrape_success",
    "1 when the lag exporter read every group's offsets from the broker within its timeout, else 0 (no lag "
    "series are then exported).",
)
LAG_SCRAPE_DURATION = CollectedMetric(
    "visearch_kafka_lag_scrape_duration_seconds",
    "How long the lag exporter's last read of the broker took, seconds.",
)
RANKER_VERSION = Gauge(
    "visearch_ranker_version",
    "Version of the learned ranker the ranking service serves with (0: none, profiles only).",
)
FEEDBACK_EVENTS = Counter(
    "visearch_feedback_events_total",
    "Feedback events published (impressions logged, clicks and purchases received).",
    ["action"],
)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Probes and scrapes every few seconds: no access log."""


def metrics_app(
    live: Callable[[], bool] | None = None, registry: CollectorRegistry = REGISTRY
) -> Callable[..., Iterable[bytes]]:
    """The WSGI app of the metrics port: ``/livez`` (liveness) and, on every other path, the Prometheus
    exposition of ``registry`` (default: the process's default registry).

    ``/livez`` answers 200 ``ok`` while ``live()`` is true (always, without a check) and 503 ``not live``
    otherwise. It runs on the metrics server's own threads, never on the gRPC server's work pool, and checks
    no dependency: a slow Milvus or Kafka makes a pod unready (gRPC health), not restarted.
    """
    exposition = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/livez":
            ok = live is None or live()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"not live\n"]
        return exposition(environ, start_response)

    return app


def start_metrics_server(
    port: int,
    host: str = "127.0.0.1",
    live: Callable[[], bool] | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> WSGIServer | None:
    """Serve ``/metrics`` and ``/livez`` (see :func:`metrics_app`) on ``host:port`` in a daemon thread.

    Returns:
        the server (``shutdown()`` and ``server_close()`` stop it; ``server_port`` is the bound port), or None
        when ``port`` is 0 (disabled).

    Raises:
        OSError: the port cannot be bound.
    """
    if not port:
        return None
    server = make_server(host, port, metrics_app(live, registry), _ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
