"""``visearch serve detection``: the detection service as its own process.

Serves DetectionService over gRPC, and, when ``VISEARCH_KAFKA_BOOTSTRAP`` is set and the stage is in
``VISEARCH_PIPELINE_STAGES``, consumes the images topic as the chain's first stage.
"""

from __future__ import annotations

import sys
from typing import Any

from visearch.services.detection.detector import Detector
from visearch.services.detection.service import SERVICE_NAME, DetectionService, DetectionStage
from visearch.shared.config import DetectionSettings, ImageSettings, ModelSettings, ServiceSettings
from visearch.shared.grpcutil import run_service
from visearch.shared.logging import configure_logging
from visearch.v1 import detection_pb2_grpc


def main(settings: ServiceSettings | None = None, **serve_kwargs: Any) -> int:
    """Load the detector, then serve until SIGTERM. Settings from VISEARCH_* variables. Returns the exit code."""
    settings = settings or ServiceSettings()
    configure_logging("detection", settings.log_level)
    detector = Detector.from_cache(ModelSettings(), DetectionSettings())
    image_settings = ImageSettings()
    return run_service(
        "detection",
        settings,
        DetectionService(detector, image_settings),
        detection_pb2_grpc.add_DetectionServiceServicer_to_server,
        SERVICE_NAME,
        DetectionStage(detector, image_settings),
        **serve_kwargs,
    )


if __name__ == "__main__":
    sys.exit(main())
