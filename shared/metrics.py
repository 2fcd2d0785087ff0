"""Prometheus metrics every service exports (names carry units; labels are low-cardinality).

The registry is the prometheus_client default, served on ``/metrics`` by :func:`start_metrics_server`.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

STAGE_SECONDS = Histogram(
    "visearch_stage_duration_seconds", "Time a pipeline stage spends on one batch, seconds.", ["stage"],
    buckets=_LATENCY_BUCKETS,
)
STAGE_ITEMS = Counter(
    "visearch_stage_items_total", "Items a pipeline stage finished, by outcome (ok, failed).", ["stage", "outcome"],
)
STAGE_ERRORS = Counter(
    "visearch_stage_errors_total", "Items a stage could not process, by reason (also the DLQ reason).", ["stage", "reason"],
)
INFERENCE_SECONDS = Histogram(
    "visearch_inference_duration_seconds", "Model inference call latency, seconds.", ["model", "runner"],
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_BATCH_SIZE = Histogram(
    "visearch_inference_batch_size", "Items per model inference call.", ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
MILVUS_SECONDS = Histogram(
    "visearch_milvus_request_duration_seconds", "Milvus call latency, seconds.", ["operation"],
    buckets=_LATENCY_BUCKETS,
)
GRPC_SECONDS = Histogram(
    "visearch_grpc_server_handling_seconds", "gRPC method handling time, seconds.", ["service", "method", "code"],
    buckets=_LATENCY_BUCKETS,
)


def start_metrics_server(port: int, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread (port 0 disables it)."""
    if port:
        start_http_server(port, addr=host)
