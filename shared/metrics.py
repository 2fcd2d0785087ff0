"""Prometheus metrics every service exports (names carry units; labels are low-cardinality).

The registry is the prometheus_client default, served on ``/metrics`` by :func:`start_metrics_server`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

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
CONSUMER_LAG = Gauge(
    "visearch_kafka_consumer_lag_records",
    "End offset minus committed offset, per partition.",
    ["topic", "group", "partition"],
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


def start_metrics_server(port: int, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread (port 0 disables it)."""
    if port:
        start_http_server(port, addr=host)
