"""Classification service: the gRPC API (Classify) and the pipeline stage, over one Classifier."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np

from visearch.shared.config import ImageSettings
from visearch.shared.grpcutil import error_from_rpc, rpc_method
from visearch.shared.images import decode_request_images
from visearch.shared.pipeline import ImageStage
from visearch.services.classification.classifier import Classifier
from visearch.v1 import classification_pb2, classification_pb2_grpc, detection_pb2, ocr_pb2

SERVICE_NAME = "visearch.v1.ClassificationService"
MAX_IMAGES_PER_REQUEST = 16


class ClassificationService(classification_pb2_grpc.ClassificationServiceServicer):
    """gRPC servicer. With ``detection``/``ocr`` stubs (gRPC or in-process), ``Classify`` also asks them,
    in parallel and with a deadline, for the objects and text behind the "object" and "has_text"
    attributes; without them those attributes are left out.
    """

    def __init__(self, classifier: Classifier, image_settings: ImageSettings | None = None, detection=None, ocr=None,
                 deadline_s: float = 10.0) -> None:
        self.classifier = classifier
        self.image_settings = image_settings or ImageSettings()
        self.detection, self.ocr, self.deadline_s = detection, ocr, deadline_s
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="classify-deps")

    @rpc_method(SERVICE_NAME)
    def Classify(self, request: classification_pb2.ClassifyRequest, context) -> classification_pb2.ClassifyResponse:  # noqa: N802
        """Taxonomy, attributes, colours and moderation of each image."""
        images = decode_request_images(request.images, self.image_settings, MAX_IMAGES_PER_REQUEST)
        detections = self._pool.submit(self._call, self.detection, "Detect", detection_pb2.DetectRequest(images=request.images))
        lines = self._pool.submit(self._call, self.ocr, "Read", ocr_pb2.ReadRequest(images=request.images))
        detections, lines = detections.result(), lines.result()
        results = self.classifier.classify(
            images, detections=[list(r.detections) for r in detections.results] if detections else None,
            text_lines=[list(r.lines) for r in lines.results] if lines else None)
        if lines:  # callers (the search API's query understanding) get the text without a second OCR call
            for result, text in zip(results, lines.results):
                result.ocr_text = text.text
        return classification_pb2.ClassifyResponse(results=results)

    def _call(self, stub, method: str, request):
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

    def process_images(self, documents, images, encoded) -> None:  # noqa: D102
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
        joint = embedder.contextualise(joint, [[(d.label, d.score) for d in doc.detections] for doc in documents],
                                       [" ".join(line.text for line in doc.text_lines) for doc in documents])
        results = self.classifier.classify(images, probs, joint, [list(d.detections) for d in documents],
                                           [list(d.text_lines) for d in documents], encoder_vectors)
        for doc, result, vector in zip(documents, results, joint):
            doc.classification.CopyFrom(result)
            if have:
                doc.embeddings.joint.values[:] = vector
