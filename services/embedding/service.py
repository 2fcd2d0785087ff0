"""Embedding service: the gRPC API (EmbedImage, EmbedText) and the pipeline stage, over one Embedder."""

from __future__ import annotations

import hashlib
import time

from google.protobuf.timestamp_pb2 import Timestamp

from visearch.shared.config import ImageSettings
from visearch.shared.errors import InvalidEventError, VisearchError
from visearch.shared.grpcutil import rpc_method
from visearch.shared.images import decode_image, image_bytes
from visearch.shared.logging import get_logger
from visearch.shared.pipeline import Stage, StageResult
from visearch.services.embedding.encoders import Embedder
from visearch.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, events_pb2

log = get_logger("embedding")

MAX_IMAGES_PER_REQUEST = 64
MAX_TEXTS_PER_REQUEST = 256
MAX_TEXT_CHARS = 2000
SERVICE_NAME = "visearch.v1.EmbeddingService"


class EmbeddingService(embedding_pb2_grpc.EmbeddingServiceServicer):
    """gRPC servicer. Limits: <= 64 images and <= 256 texts (each <= 2,000 chars) per request."""

    def __init__(self, embedder: Embedder, image_settings: ImageSettings | None = None) -> None:
        self.embedder = embedder
        self.image_settings = image_settings or ImageSettings()

    @rpc_method(SERVICE_NAME)
    def EmbedImage(self, request: embedding_pb2.EmbedImageRequest, context) -> embedding_pb2.EmbedImageResponse:  # noqa: N802
        """Embed each image; any bad image fails the call with INVALID_ARGUMENT naming its index."""
        if not request.images:
            raise InvalidEventError("EmbedImage needs at least one image", reason="empty_request")
        if len(request.images) > MAX_IMAGES_PER_REQUEST:
            raise InvalidEventError(f"at most {MAX_IMAGES_PER_REQUEST} images per request", reason="too_many_images")
        decoded = []
        for index, image in enumerate(request.images):
            try:
                decoded.append(decode_image(image_bytes(image, self.image_settings), self.image_settings))
            except VisearchError as exc:
                raise type(exc)(f"image {index}: {exc}", reason=exc.reason) from exc
        result = self.embedder.embed_images(decoded)
        top = self.embedder.top_classes(result.probs, request.top_classes) if request.top_classes > 0 else [[]] * len(decoded)
        response = embedding_pb2.EmbedImageResponse(image_model=self.embedder.image_model, text_model=self.embedder.text_model)
        for i in range(len(decoded)):
            response.embeddings.add(
                image=common_pb2.Vector(values=result.image[i]), joint=common_pb2.Vector(values=result.joint[i]),
                classes=[common_pb2.ClassScore(wnid=c.wnid, name=c.name, score=s) for c, s in top[i]],
            )
        return response

    @rpc_method(SERVICE_NAME)
    def EmbedText(self, request: embedding_pb2.EmbedTextRequest, context) -> embedding_pb2.EmbedTextResponse:  # noqa: N802
        """Embed each text into the joint space (384-d, unit norm)."""
        if not request.texts:
            raise InvalidEventError("EmbedText needs at least one text", reason="empty_request")
        if len(request.texts) > MAX_TEXTS_PER_REQUEST:
            raise InvalidEventError(f"at most {MAX_TEXTS_PER_REQUEST} texts per request", reason="too_many_texts")
        if any(len(t) > MAX_TEXT_CHARS for t in request.texts):
            raise InvalidEventError(f"a text is longer than {MAX_TEXT_CHARS} characters", reason="text_too_long")
        vectors = self.embedder.embed_texts(list(request.texts))
        return embedding_pb2.EmbedTextResponse(
            vectors=[common_pb2.Vector(values=v) for v in vectors], text_model=self.embedder.text_model)


class EmbeddingStage(Stage):
    """Pipeline stage: decode each upsert's image, embed the batch, add info, vectors and top classes.

    Deletes and attribute updates pass through untouched. A bad image fails only its own document.
    """

    name = "embedding"

    def __init__(self, embedder: Embedder, image_settings: ImageSettings | None = None, top_classes: int = 5) -> None:
        self.embedder = embedder
        self.image_settings = image_settings or ImageSettings()
        self.top_classes = top_classes

    def process(self, documents: list[events_pb2.ImageDocument]) -> list[StageResult]:  # noqa: D102
        start = time.perf_counter()
        results: list[StageResult] = list(documents)
        pending, images = [], []
        for i, doc in enumerate(documents):
            if doc.event.kind != events_pb2.ImageEvent.KIND_UPSERT:
                continue
            try:
                data = image_bytes(doc.event.image, self.image_settings)
                image = decode_image(data, self.image_settings)
            except VisearchError as exc:
                results[i] = self.fail(doc, exc)
                continue
            doc.info.CopyFrom(events_pb2.ImageInfo(
                width=image.width, height=image.height, format=image.format or "", sha256=hashlib.sha256(data).hexdigest(),
                size_bytes=len(data)))
            pending.append(i)
            images.append(image)
        if images:
            emb = self.embedder.embed_images(images)
            top = self.embedder.top_classes(emb.probs, self.top_classes)
            for row, i in enumerate(pending):
                doc = documents[i]
                doc.embeddings.image.values[:] = emb.image[row]
                doc.embeddings.joint.values[:] = emb.joint[row]
                doc.embeddings.image_model = self.embedder.image_model
                doc.embeddings.text_model = self.embedder.text_model
                del doc.classes[:]
                doc.classes.extend(common_pb2.ClassScore(wnid=c.wnid, name=c.name, score=s) for c, s in top[row])
        elapsed_ms = (time.perf_counter() - start) * 1000
        finished = Timestamp()
        finished.GetCurrentTime()
        for doc in documents:
            doc.stages.add(stage=self.name, duration_ms=elapsed_ms / max(len(documents), 1), finished_at=finished)
        return results

