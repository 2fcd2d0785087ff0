"""``visearch serve classification``: the classification service as its own process.

Serves ClassificationService over gRPC (asking the detection and OCR services at
``VISEARCH_DETECTION_ADDR`` / ``VISEARCH_OCR_ADDR`` for objects and text, when set) and, with Kafka
configured, consumes the OCR topic as the chain's classification stage.
"""

from __future__ import annotations

import sys
from typing import Any

from visearch.services.classification.classifier import Classifier
from visearch.services.classification.service import SERVICE_NAME, ClassificationService, ClassificationStage
from visearch.shared.config import ClassificationSettings, ImageSettings, ModelSettings, ServiceSettings
from visearch.shared.grpcutil import client_channel, run_service
from visearch.shared.logging import configure_logging
from visearch.v1 import classification_pb2_grpc, detection_pb2_grpc, ocr_pb2_grpc


def main(settings: ServiceSettings | None = None, **serve_kwargs: Any) -> int:
    """Load the models, then serve until SIGTERM. Settings from VISEARCH_* variables. Returns the exit code."""
    settings = settings or ServiceSettings()
    configure_logging("classification", settings.log_level)
    classifier = Classifier.from_cache(ModelSettings(), ClassificationSettings())
    image_settings = ImageSettings()
    detection = (
        detection_pb2_grpc.DetectionServiceStub(client_channel(settings.detection_addr))
        if settings.detection_addr
        else None
    )
    ocr = ocr_pb2_grpc.OcrServiceStub(client_channel(settings.ocr_addr)) if settings.ocr_addr else None
    servicer = ClassificationService(classifier, image_settings, detection, ocr)
    return run_service(
        "classification",
        settings,
        servicer,
        classification_pb2_grpc.add_ClassificationServiceServicer_to_server,
        SERVICE_NAME,
        ClassificationStage(classifier, image_settings),
        **serve_kwargs,
    )


if __name__ == "__main__":
    sys.exit(main())
