"""``/v1/recognize``: what the recognition services see in one image, in one JSON answer.

Detection (objects and their boxes), OCR (lines with their polygons) and classification (taxonomy path,
attributes with scores, colours, quality, moderation) are called in parallel; a service the gateway has no
address for is left out of the answer (its key is null).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from visearch.services.gateway.backend import Backend
from visearch.services.gateway.jsonmap import message_to_dict
from visearch.v1 import classification_pb2, common_pb2, detection_pb2, ocr_pb2

RECOGNIZE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "detections": {"$ref": "#/components/schemas/visearch.v1.ImageDetections"},
        "text": {"$ref": "#/components/schemas/visearch.v1.ImageText"},
        "classification": {"$ref": "#/components/schemas/visearch.v1.Classification"},
    },
}


def recognize(backend: Backend, image: common_pb2.Image, authorization: str | None = None) -> dict[str, Any]:
    """Detect, read and classify ``image`` (inline bytes) with the backend's recognition services.

    Returns:
        ``{"detections": ImageDetections | None, "text": ImageText | None, "classification": Classification |
        None}`` in the proto3 JSON mapping (None: no such service configured).

    Raises:
        HttpError: a service refused the image or failed (its reason code and HTTP status).
    """
    images = [image]
    calls = {
        "detections": (backend.detection, "Detect", detection_pb2.DetectRequest(images=images)),
        "text": (backend.ocr, "Read", ocr_pb2.ReadRequest(images=images)),
        "classification": (backend.classification, "Classify", classification_pb2.ClassifyRequest(images=images)),
    }
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        pending = {
            key: pool.submit(backend.call, stub, method, request, authorization)
            for key, (stub, method, request) in calls.items()
            if stub is not None
        }
        answers = {key: future.result().results[0] for key, future in pending.items()}
    return {key: message_to_dict(answers[key]) if key in answers else None for key in calls}
