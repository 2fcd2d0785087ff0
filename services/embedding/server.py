"""``visearch serve embedding``: the embedding service as its own process (gRPC + /metrics)."""

from __future__ import annotations

import grpc

from visearch.shared.config import ConseSettings, ImageSettings, ModelSettings, ServiceSettings
from visearch.shared.grpcutil import serve
from visearch.shared.logging import configure_logging
from visearch.shared.metrics import start_metrics_server
from visearch.services.embedding.encoders import Embedder
from visearch.services.embedding.service import SERVICE_NAME, EmbeddingService
from visearch.v1 import embedding_pb2_grpc


def main(settings: ServiceSettings | None = None, **serve_kwargs) -> None:
    """Load the models, then serve EmbeddingService until SIGTERM. Settings from VISEARCH_* variables."""
    settings = settings or ServiceSettings()
    configure_logging("embedding", settings.log_level)
    servicer = EmbeddingService(Embedder.from_cache(ModelSettings(), ConseSettings()), ImageSettings())
    start_metrics_server(settings.metrics_port, settings.grpc_host)

    def register(server: grpc.Server) -> list[str]:
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    serve("embedding", register, settings, **serve_kwargs)


if __name__ == "__main__":
    main()
