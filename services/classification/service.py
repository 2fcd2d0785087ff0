"""Classification service: the gRPC API (Classify) and the pipeline stage, over one Classifier."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import Message
from PIL import Image

from visearch.services.classification.classifier import DEFAULT_PARTS, PIXEL_FREE_PARTS, Classifier
from visearch.shared.config import ImageSettings
from visearch.shared.encoders import TEXT_DIM
from visearch.shared.errors import InvalidEventError
from visearch.shared.grpcutil import InProcessStub, error_from_rpc, rpc_method
from visearch.shared.images import decode_request_images
from visearch.shared.pipeline import ImageStage
from visearch.v1 import (
    classification_pb2,
    classification_pb2_grpc,
    detection_pb2,
    detection_pb2_grpc,
    events_pb2,
    ocr_pb2,
    ocr_pb2_grpc,
)

SERVICE_NAME = "visearch.v1.ClassificationService"
MAX_IMAGES_PER_REQUEST = 16


class ClassificationService(classification_pb2_grpc.ClassificationServiceServicer):
    """gRPC servicer. With ``detection``/``ocr`` stubs (gRPC or in-process), ``Classify`` also asks them,
    in parallel and with a deadline, for the objects and text behind the "object" and "has_text"
    attributes; without them those attributes are left out.
    """

    def __init__(
        self,
        classifier: Classifier,
        image_settings: ImageSettings | None = None,
        detection: detection_pb2_grpc.DetectionServiceStub | InProcessStub | None = None,
        ocr: ocr_pb2_grpc.OcrServiceStub | InProcessStub | None = None,
        deadline_s: float = 10.0,
    ) -> None:
        self.classifier = classifier
        self.image_settings = image_settings or ImageSettings()
        self.detection, self.ocr, self.deadline_s = detection, ocr, deadline_s
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="classify-deps")

    @rpc_method(SERVICE_NAME)
    def Classify(
        self, request: classification_pb2.ClassifyRequest, context: grpc.ServicerContext | None
    ) -> classification_pb2.ClassifyResponse:  # noqa: N802
        """Taxonomy, attributes, colours and moderation of each image (only ``parts``, when given).

        With ``precomputed`` (the embedding service's class probabilities and joint vector per image) the
        image model does not run again, and parts that need no pixels need no image at all.
        Raises INVALID_ARGUMENT for a bad image, or when ``precomputed`` does not match the images.
        """
        parts = (
            frozenset(
                classification_pb2.ClassifyPart.Name(p).removeprefix("CLASSIFY_PART_").lower()
                for p in request.parts
                if p
            )
            or DEFAULT_PARTS
        )
        probs = joint = None
        if request.precomputed:
            if request.images and len(request.precomputed) != len(request.images):
                raise InvalidEventError(
                    f"precomputed: one per image, got {len(request.precomputed)} for {len(request.images)} images",
                    reason="bad_precomputed",
                )
            try:
                probs = np.array([p.class_probs.values for p in request.precomputed], dtype=np.float32)
                joint = np.array([p.joint.values for p in request.precomputed], dtype=np.float32)
            except ValueError as exc:  # ragged rows
                raise InvalidEventError(
                    f"precomputed vectors differ in length: {exc}", reason="bad_precomputed"
                ) from exc
            expected = (len(self.classifier.embedder.image.classes), TEXT_DIM)
            if probs.ndim != 2 or joint.ndim != 2 or (probs.shape[1], joint.shape[1]) != expected:
                raise InvalidEventError(
                    f"precomputed class_probs / joint must have {expected[0]} / {expected[1]} values",
                    reason="bad_precomputed",
                )
        if request.images or probs is None or parts - PIXEL_FREE_PARTS:
            images = decode_request_images(request.images, self.image_settings, MAX_IMAGES_PER_REQUEST)
        else:
            images = None  # taxonomy / concepts from the given model outputs: no pixels needed
        detections = lines = None
        if request.images:
            pending_detections = (
                self._pool.submit(
                    self._call, self.detection, "Detect", detection_pb2.DetectRequest(images=request.images)
                )
                if "objects" in parts
                else None
            )
            pending_lines = (
                self._pool.submit(self._call, self.ocr, "Read", ocr_pb2.ReadRequest(images=request.images))
                if "text" in parts
                else None
            )
            detections = pending_detections.result() if pending_detections else None
            lines = pending_lines.result() if pending_lines else None
        results = self.classifier.classify(
            images,
            probs,
            joint,
            detections=[list(r.detections) for r in detections.results] if detections else None,
            text_lines=[list(r.lines) for r in lines.results] if lines else None,
            parts=parts,
        )
        if lines:  # callers get the text without a second OCR call
            for result, text in zip(results, lines.results):
                result.ocr_text = text.text
        return classification_pb2.ClassifyResponse(results=results)

    def _call(self, stub: object | None, method: str, request: Message) -> Any:
        """``stub.method(request)`` with the deadline (None without a stub); a failed RPC becomes its VisearchError."""
        if stub is None:
            return None
        try:
            return getattr(stub, method)(request, timeout=self.deadline_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, f"classification->{method}") from exc


class ClassificationStage(ImageStage):
    """Pipeline stage: classifies each upsert from its image and what earlier stages added (class
    probabilities and joint vector from embedding, objects from detection, lines from OCR)."""

    name = "classification"

    def __init__(self, classifier: Classifier, image_settings: ImageSettings | None = None) -> None:
        super().__init__(image_settings)
        self.classifier = classifier

    def process_images(
        self, documents: list[events_pb2.ImageDocument], images: list[Image.Image], encoded: list[bytes]
    ) -> None:  # noqa: D102
        embedder = self.classifier.embedder
        have = all(d.embeddings.class_probs.values and d.embeddings.joint.values for d in documents)
        encoder_vectors = None  # the catalogue head's input: unprojected encoder vectors
        if have:
            probs = np.array([d.embeddings.class_probs.values for d in documents], dtype=np.float32)
            joint = np.array([d.embeddings.joint.values for d in documents], dtype=np.float32)
            if all(d.embeddings.image_model == embedder.encoder_model and d.embeddings.image.values for d in documents):
                encoder_vectors = np.array([d.embeddings.image.values for d in documents], dtype=np.float32)
        else:  # the chain has no embedding stage before this one
            emb = embedder.embed_images(images)
            probs, joint, encoder_vectors = emb.probs, emb.joint, emb.raw
        # The indexed joint vector also carries the objects and the OCR text (text search finds both).
        joint = embedder.contextualise(
            joint,
            [[(d.label, d.score) for d in doc.detections] for doc in documents],
            [" ".join(line.text for line in doc.text_lines) for doc in documents],
        )
        results = self.classifier.classify(
            images,
            probs,
            joint,
            [list(d.detections) for d in documents],
            [list(d.text_lines) for d in documents],
            encoder_vectors,
        )
        for doc, result, vector in zip(documents, results, joint):
            doc.classification.CopyFrom(result)
            if have:
                doc.embeddings.joint.values[:] = vector
