"""``visearch serve ocr``: the OCR service as its own process (gRPC Read, and the ocr stage on Kafka)."""

from __future__ import annotations

import sys
from typing import Any

from visearch.services.ocr.reader import TextReader
from visearch.services.ocr.service import SERVICE_NAME, OcrService, OcrStage
from visearch.shared.config import ImageSettings, ModelSettings, OcrSettings, ServiceSettings
from visearch.shared.grpcutil import run_service
from visearch.shared.logging import configure_logging
from visearch.v1 import ocr_pb2_grpc


def main(settings: ServiceSettings | None = None, **serve_kwargs: Any) -> int:
    """Load the OCR models, then serve until SIGTERM. Settings from VISEARCH_* variables. Returns the exit code."""
    settings = settings or ServiceSettings()
    configure_logging("ocr", settings.log_level)
    reader = TextReader.from_cache(ModelSettings(), OcrSettings())
    image_settings = ImageSettings()
    return run_service(
        "ocr",
        settings,
        OcrService(reader, image_settings),
        ocr_pb2_grpc.add_OcrServiceServicer_to_server,
        SERVICE_NAME,
        OcrStage(reader, image_settings),
        **serve_kwargs,
    )


if __name__ == "__main__":
    sys.exit(main())
