"""``visearch serve indexer``: the indexer stage as its own process (health-only gRPC, /metrics, worker).

Consumes the last enrichment topic of the chain and writes to Milvus at ``VISEARCH_MILVUS_URI``;
offsets are committed only after the Milvus write returned.
"""

from __future__ import annotations

import sys
from typing import Any

from visearch.services.indexer.stage import IndexerStage
from visearch.shared.config import KafkaSettings, PipelineSettings, ServiceSettings, StoreSettings
from visearch.shared.errors import ConfigError
from visearch.shared.grpcutil import serve
from visearch.shared.logging import configure_logging
from visearch.shared.metrics import start_metrics_server
from visearch.shared.store import MilvusStore
from visearch.shared.thumbnails import ThumbnailStore


def main(settings: ServiceSettings | None = None, **serve_kwargs: Any) -> int:
    """Connect to Milvus and Kafka, then index until SIGTERM. Returns the exit code.

    Raises:
        SystemExit: VISEARCH_KAFKA_BOOTSTRAP is not set (the indexer has nothing to consume).
        ConfigError: VISEARCH_SERVICE_ROLE is ``grpc`` (the indexer serves no API: it is a worker).
    """
    settings = settings or ServiceSettings()
    configure_logging("indexer", settings.log_level)
    if settings.service_role == "grpc":
        raise ConfigError("VISEARCH_SERVICE_ROLE=grpc: the indexer serves no gRPC API (use all or worker)")
    kafka, pipeline = KafkaSettings(), PipelineSettings()
    if not kafka.bootstrap:
        raise SystemExit("the indexer consumes Kafka: set VISEARCH_KAFKA_BOOTSTRAP (e.g. 127.0.0.1:9092)")
    from visearch.shared.kafka import stage_worker_loop

    store = MilvusStore(StoreSettings())
    start_metrics_server(settings.metrics_port, settings.grpc_host)
    try:
        worker = stage_worker_loop(
            IndexerStage(store, settings.tenant, thumbnails=ThumbnailStore.from_settings()), kafka, pipeline.stage_list
        )
        return serve("indexer", lambda server: [], settings, workers=(worker,), **serve_kwargs)
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
