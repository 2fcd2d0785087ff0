"""Detection service: the gRPC API (Detect) and the pipeline stage, over one Detector."""

from __future__ import annotations

import grpc
from PIL import Image

from visearch.services.detection.detector import Detection, Detector
from visearch.shared.config import ImageSettings
from visearch.shared.grpcutil import rpc_method
from visearch.shared.images import decode_request_images
from visearch.shared.pipeline import ImageStage
from visearch.v1 import common_pb2, detection_pb2, detection_pb2_grpc, events_pb2

SERVICE_NAME = "visearch.v1.DetectionService"
MAX_IMAGES_PER_REQUEST = 32


def detection_message(d: Detection) -> common_pb2.Detection:
    """The protobuf form of a :class:`Detection` (box in original pixels)."""
    x1, y1, x2, y2 = d.box
    return common_pb2.Detection(
        label=d.label, class_id=d.class_id, score=d.score, box=common_pb2.Box(x1=x1, y1=y1, x2=x2, y2=y2)
    )


class DetectionService(detection_pb2_grpc.DetectionServiceServicer):
    """gRPC servicer: at most 32 images per request; INVALID_ARGUMENT names the first bad image."""

    def __init__(self, detector: Detector, image_settings: ImageSettings | None = None) -> None:
        self.detector = detector
        self.image_settings = image_settings or ImageSettings()

    @rpc_method(SERVICE_NAME)
    def Detect(
        self, request: detection_pb2.DetectRequest, context: grpc.ServicerContext | None
    ) -> detection_pb2.DetectResponse:  # noqa: N802
        """Objects in each image, highest score first, at or above ``min_score`` (0: the configured threshold)."""
        images = decode_request_images(request.images, self.image_settings, MAX_IMAGES_PER_REQUEST)
        response = detection_pb2.DetectResponse(model=self.detector.model_name)
        for image, found in zip(images, self.detector.detect(images)):
            response.results.add(
                detections=[detection_message(d) for d in found if d.score >= request.min_score],
                width=image.width,
                height=image.height,
            )
        return response


class DetectionStage(ImageStage):
    """Pipeline stage: adds each upsert's detected objects to its document (the first stage of the chain)."""

    name = "detection"

    def __init__(self, detector: Detector, image_settings: ImageSettings | None = None) -> None:
        super().__init__(image_settings)
        self.detector = detector

    def process_images(
        self, documents: list[events_pb2.ImageDocument], images: list[Image.Image], encoded: list[bytes]
    ) -> None:  # noqa: D102
        for doc, found in zip(documents, self.detector.detect(images)):
            del doc.detections[:]
            doc.detections.extend(detection_message(d) for d in found)
