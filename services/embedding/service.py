"""Embedding service: the gRPC API (EmbedImage, EmbedText, EmbedRegions) and the pipeline stage, over one Embedder."""

from __future__ import annotations

import hashlib

import grpc
from PIL import Image

from visearch.shared.config import DetectionSettings, ImageSettings
from visearch.shared.encoders import Embedder
from visearch.shared.errors import InvalidEventError
from visearch.shared.grpcutil import rpc_method
from visearch.shared.images import RESIZE_SHORT_SIDE, crop_box, decode_request_images
from visearch.shared.logging import get_logger
from visearch.shared.pipeline import ImageStage
from visearch.shared.regions import select_regions
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
    def EmbedImage(
        self, request: embedding_pb2.EmbedImageRequest, context: grpc.ServicerContext | None
    ) -> embedding_pb2.EmbedImageResponse:  # noqa: N802
        """Embed each image (or its box in ``crops``); ``class_probs`` also returns the ImageNet probabilities.

        Raises INVALID_ARGUMENT naming the index of a bad image or box, or when ``crops`` is neither empty
        nor one per image.
        """
        crops = list(request.crops)
        if crops and len(crops) != len(request.images):
            raise InvalidEventError(
                f"crops: none or one per image, got {len(crops)} for {len(request.images)} images", reason="bad_box"
            )
        # Only the global embedding is computed, which resizes to 256 px: a large JPEG decodes at reduced
        # scale (not when a crop is taken: boxes are in the original's pixels).
        min_side = RESIZE_SHORT_SIDE if self.image_settings.draft_decode and not crops else 0
        decoded = decode_request_images(request.images, self.image_settings, MAX_IMAGES_PER_REQUEST, min_side)
        for index, box in enumerate(crops):
            if (box.x1, box.y1, box.x2, box.y2) != (0, 0, 0, 0):
                try:
                    decoded[index] = crop_box(decoded[index], (box.x1, box.y1, box.x2, box.y2))
                except InvalidEventError as exc:
                    raise InvalidEventError(f"image {index}: {exc}", reason=exc.reason) from exc
        result = self.embedder.embed_images(decoded)
        top = (
            self.embedder.top_classes(result.probs, request.top_classes)
            if request.top_classes > 0
            else [[]] * len(decoded)
        )
        response = embedding_pb2.EmbedImageResponse(
            image_model=self.embedder.image_model, text_model=self.embedder.text_model
        )
        for i in range(len(decoded)):
            response.embeddings.add(
                image=common_pb2.Vector(values=result.image[i]),
                joint=common_pb2.Vector(values=result.joint[i]),
                classes=[common_pb2.ClassScore(wnid=c.wnid, name=c.name, score=s) for c, s in top[i]],
                class_probs=common_pb2.Vector(values=result.probs[i]) if request.class_probs else None,
            )
        return response

    @rpc_method(SERVICE_NAME)
    def EmbedRegions(
        self, request: embedding_pb2.EmbedRegionsRequest, context: grpc.ServicerContext | None
    ) -> embedding_pb2.EmbedRegionsResponse:  # noqa: N802
        """Embed boxes of one image (each cropped, clipped to the image) into the global image space."""
        if not request.boxes:
            raise InvalidEventError("EmbedRegions needs at least one box", reason="empty_request")
        if len(request.boxes) > MAX_IMAGES_PER_REQUEST:
            raise InvalidEventError(f"at most {MAX_IMAGES_PER_REQUEST} boxes per request", reason="too_many_boxes")
        (image,) = decode_request_images([request.image], self.image_settings, 1)
        crops = [crop_box(image, (b.x1, b.y1, b.x2, b.y2)) for b in request.boxes]
        vectors = self.embedder.embed_images(crops).image
        return embedding_pb2.EmbedRegionsResponse(
            vectors=[common_pb2.Vector(values=v) for v in vectors], image_model=self.embedder.image_model
        )

    @rpc_method(SERVICE_NAME)
    def EmbedText(
        self, request: embedding_pb2.EmbedTextRequest, context: grpc.ServicerContext | None
    ) -> embedding_pb2.EmbedTextResponse:  # noqa: N802
        """Embed each text into the joint space (384-d, unit norm); with ``as_query``, as a search query (joint
        vector reduced for hubness, image-space vector, concepts: see ``Embedder.embed_queries``)."""
        if not request.texts:
            raise InvalidEventError("EmbedText needs at least one text", reason="empty_request")
        if len(request.texts) > MAX_TEXTS_PER_REQUEST:
            raise InvalidEventError(f"at most {MAX_TEXTS_PER_REQUEST} texts per request", reason="too_many_texts")
        if any(len(t) > MAX_TEXT_CHARS for t in request.texts):
            raise InvalidEventError(f"a text is longer than {MAX_TEXT_CHARS} characters", reason="text_too_long")
        if not request.as_query:
            vectors = self.embedder.embed_texts(list(request.texts))
            return embedding_pb2.EmbedTextResponse(
                vectors=[common_pb2.Vector(values=v) for v in vectors], text_model=self.embedder.text_model
            )
        queries = self.embedder.embed_queries(list(request.texts))
        return embedding_pb2.EmbedTextResponse(
            vectors=[common_pb2.Vector(values=v) for v in queries.joint],
            text_model=self.embedder.text_model,
            visual_vectors=[common_pb2.Vector(values=v) for v in queries.visual] if queries.visual is not None else [],
            visual_model=queries.visual_model,
            concepts=[
                embedding_pb2.QueryConcepts(tags=c.coco, phrases=[m.phrase for m in c.matches], coverage=c.coverage)
                for c in queries.concepts or []
            ],
        )


class EmbeddingStage(ImageStage):
    """Pipeline stage: embed each upsert's image (global vector, joint vector, class probabilities, top
    classes) and, when the detection stage ran before it, the regions of its detected objects.
    """

    name = "embedding"

    def __init__(
        self,
        embedder: Embedder,
        image_settings: ImageSettings | None = None,
        top_classes: int = 5,
        detection_settings: DetectionSettings | None = None,
    ) -> None:
        super().__init__(image_settings)
        self.embedder = embedder
        self.top_classes = top_classes
        self.detection_settings = detection_settings or DetectionSettings()

    def process_images(
        self, documents: list[events_pb2.ImageDocument], images: list[Image.Image], encoded: list[bytes]
    ) -> None:  # noqa: D102
        crops, owners = [], []  # region crops of every document, embedded in the same batches
        for doc, image, data in zip(documents, images, encoded):
            doc.info.CopyFrom(
                events_pb2.ImageInfo(
                    width=image.width,
                    height=image.height,
                    format=image.format or "",
                    sha256=hashlib.sha256(data).hexdigest(),
                    size_bytes=len(data),
                )
            )
            del doc.regions[:]
            for index in select_regions(doc.detections, image.width, image.height, self.detection_settings):
                box = doc.detections[index].box
                try:
                    crops.append(crop_box(image, (box.x1, box.y1, box.x2, box.y2)))
                except InvalidEventError:  # a sliver of a box: no region
                    continue
                owners.append((doc, index))
        emb = self.embedder.embed_images(images + crops)
        top = self.embedder.top_classes(emb.probs[: len(images)], self.top_classes)
        for row, doc in enumerate(documents):
            doc.embeddings.image.values[:] = emb.image[row]
            doc.embeddings.joint.values[:] = emb.joint[row]
            doc.embeddings.class_probs.values[:] = emb.probs[row]
            doc.embeddings.image_model = self.embedder.image_model
            doc.embeddings.text_model = self.embedder.text_model
            del doc.classes[:]
            doc.classes.extend(common_pb2.ClassScore(wnid=c.wnid, name=c.name, score=s) for c, s in top[row])
        for row, (doc, index) in enumerate(owners, start=len(images)):
            region = doc.regions.add(index=index, embedding=common_pb2.Vector(values=emb.image[row]))
            region.detection.CopyFrom(doc.detections[index])
