"""``visearch serve embedding``: the embedding service as its own process.

Serves EmbeddingService over gRPC, and, when ``VISEARCH_KAFKA_BOOTSTRAP`` is set and the stage is
in ``VISEARCH_PIPELINE_STAGES``, consumes its input topic as the pipeline's embedding stage.
"""

from __future__ import annotations

import sys
from typing import Any

from visearch.services.embedding.service import SERVICE_NAME, EmbeddingService, EmbeddingStage
from visearch.shared.config import ConseSettings, DetectionSettings, ImageSettings, ModelSettings, ServiceSettings
from visearch.shared.encoders import Embedder
from visearch.shared.grpcutil import run_service
from visearch.shared.logging import configure_logging
from visearch.v1 import embedding_pb2_grpc


def main(settings: ServiceSettings | None = None, **serve_kwargs: Any) -> int:
    """Load the models, then serve until SIGTERM. Settings from VISEARCH_* variables. Returns the exit code."""
    settings = settings or ServiceSettings()
    configure_logging("embedding", settings.log_level)
    embedder = Embedder.from_cache(ModelSettings(), ConseSettings())
    image_settings = ImageSettings()
    servicer = EmbeddingService(embedder, image_settings)
    stage = EmbeddingStage(embedder, image_settings, detection_settings=DetectionSettings())
    return run_service(
        "embedding",
        settings,
        servicer,
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server,
        SERVICE_NAME,
        stage,
        **serve_kwargs,
    )


if __name__ == "__main__":
    sys.exit(main())
