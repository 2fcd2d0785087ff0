"""Query understanding of an image query: a cascade of signals, cheapest first, each with a time budget.

What runs is what the plan asks for (``planner.py``: the factors the ranker weighs, the region mode):

1. ``image_embedding`` (required): EmbedImage of the query (or of its ``region``), returning the class
   probabilities too when the classes are wanted, so the query image goes through the image model once.
2. ``pixels`` (in this process, concurrent with 1): a draft-mode decode at ~256 px, then the colour
   descriptor and dominant colours, the perceptual hash, and the main photo of a framed query
   (``visearch.shared.framing.main_region``: a screenshot or web page); for a framed query these are
   computed on the main photo, not the page around it.
3. ``main_region_embedding`` (framed queries only): EmbedImage of the main photo's box, searched
   alongside the whole image (``routes.VisualRoute``), each candidate keeping the better cosine.
4. ``classes``: Classify with only the taxonomy and concept parts over the embedding's class
   probabilities and joint vector (the main photo's, when framed): no second image-model pass, no pixels.
5. ``text``: OCR of the downscaled query (the main photo when framed), only when a ~2 ms text-presence
   check (``visearch.shared.text_presence``) sees lines of text: the text detector on an image of
   ``query_ocr_max_side`` px, recognition on the lines it finds. Skipped as "no_text" otherwise.
6. ``objects``: detection of the query's objects, for REGION_MODE_QUERY_OBJECTS (on the original, with the region
   embeddings of the objects the indexer would keep) and for the tags factor (``query_object_tags``: on the pixel
   step's small copy; their labels join the query's tags, as detected objects are among an indexed image's).

Each optional signal has a deadline (``RankingSettings.signal_budgets_ms``, from the start of the
request); one not ready by then, or whose service fails, is skipped: the response lists every signal
with ``used``, ``skipped`` ("deadline", "unavailable", "failed", "no_text") and its time, and the search goes on
with the factors it has.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf.message import Message
from PIL import Image

from visearch.services.ranking.factors import TAG_ATTRIBUTES, TAXONOMY_SEPARATOR, text_tags
from visearch.services.ranking.query import Query
from visearch.shared.colour import colour_descriptor, dominant_colours
from visearch.shared.config import ClassificationSettings, DetectionSettings, ImageSettings, RankingSettings
from visearch.shared.duplicates import perceptual_hash
from visearch.shared.errors import DependencyUnavailableError, VisearchError
from visearch.shared.framing import main_region
from visearch.shared.grpcutil import InProcessStub, error_from_rpc
from visearch.shared.images import decode_image, image_bytes
from visearch.shared.logging import get_logger
from visearch.shared.regions import select_regions
from visearch.shared.text_presence import likely_text
from visearch.v1 import (
    classification_pb2,
    classification_pb2_grpc,
    common_pb2,
    detection_pb2,
    detection_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    ocr_pb2,
    ocr_pb2_grpc,
    search_pb2,
)

log = get_logger("ranking")

# Draft decode for the pixel signals: colours and pHash work on <= 128 px copies, the framing and text checks
# want ~256 px (their morphology sees a line of text only from ~5 px high).
PIXEL_MIN_SIDE = 256
OCR_JPEG_QUALITY = 90
TEXT_MIN_LINES = 1  # line-like regions the text-presence check must find before OCR runs (a single word counts)


@dataclass(frozen=True)
class SignalPlan:
    """Which optional signals an image query computes (``planner.plan_signals`` decides)."""

    pixels: bool = False
    framing: bool = False
    classes: bool = False
    text: bool = False
    objects: bool = False
    object_tags: bool = False  # detected objects' labels as query tags (the "object" tags the index holds)

    def expected(self) -> set[str]:
        """The :class:`Query` attributes these signals fill when they all arrive in time."""
        return (
            {"visual"}
            | ({"colour", "phash", "tags"} if self.pixels else set())
            | ({"tags"} if self.object_tags else set())
            | ({"tags", "taxonomy"} if self.classes else set())
            | ({"text"} if self.text else set())
        )


@dataclass
class QueryObject:
    """A detected object of the query image and its embedding (REGION_MODE_QUERY_OBJECTS)."""

    detection: common_pb2.Detection
    vector: np.ndarray


@dataclass
class UnderstoodImage:
    """The result of the cascade: the query, its objects, the main region found, and the signal report."""

    query: Query
    objects: list[QueryObject] | None = None
    main_region: common_pb2.Box | None = None
    signals: list[search_pb2.QuerySignal] = field(default_factory=list)


@dataclass
class _Pixels:
    colour: np.ndarray | None  # None unless the plan asks for the pixel signals
    colour_tags: dict[str, float]
    phash: int
    box: tuple[int, int, int, int] | None  # main photo, original pixels
    text: Future[tuple[str, float]] | None  # OCR of the downscaled query (or main photo), started as soon as it was cut
    no_text: bool = False  # the text-presence check found no line of text: no OCR
    # detection of the downscaled query (or main photo), for the tags
    objects: Future[tuple[detection_pb2.ImageDetections, float]] | None = None


class QueryUnderstanding:
    """Runs the cascade with the recognition services' stubs (gRPC or in-process).

    Args:
        embedding: EmbeddingService stub (required).
        classification, ocr, detection: stubs, or None when the service is not configured (its signals are
            then skipped as "unavailable").
        settings: budgets, framing, OCR side. ``deadline_s``: each call's gRPC deadline, seconds.
        pool: the executor the signals run on (shared with the service; at least 4 workers).
    """

    def __init__(
        self,
        embedding: embedding_pb2_grpc.EmbeddingServiceStub | InProcessStub,
        classification: classification_pb2_grpc.ClassificationServiceStub | InProcessStub | None,
        ocr: ocr_pb2_grpc.OcrServiceStub | InProcessStub | None,
        detection: detection_pb2_grpc.DetectionServiceStub | InProcessStub | None,
        settings: RankingSettings,
        image_settings: ImageSettings,
        detection_settings: DetectionSettings,
        deadline_s: float,
        pool: Executor,
    ) -> None:
        self.embedding, self.classification, self.ocr, self.detection = embedding, classification, ocr, detection
        self.settings = settings
        self.image_settings = image_settings
        self.detection_settings = detection_settings
        self.deadline_s = deadline_s
        self.pool = pool
        self.colours = ClassificationSettings().colours

    # --- calls ----------------------------------------------------------------------------------

    def call(self, stub: object, method: str, request: Message, timeout: float | None = None) -> Any:
        """``stub.method(request)`` with a deadline; a failed RPC becomes the matching VisearchError."""
        try:
            return getattr(stub, method)(request, timeout=timeout or self.deadline_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, method) from exc

    def embed_image(
        self, image: common_pb2.Image, crop: common_pb2.Box | None = None, class_probs: bool = False
    ) -> embedding_pb2.ImageEmbedding:
        """One EmbedImage call: the ``ImageEmbedding`` of ``image`` (or of its ``crop``)."""
        request = embedding_pb2.EmbedImageRequest(
            images=[image], class_probs=class_probs, crops=[crop] if crop is not None else []
        )
        return self.call(self.embedding, "EmbedImage", request).embeddings[0]

    def embed_text(self, text: str) -> Query:
        """A text query as the embedding service embeds search queries (``EmbedText`` with ``as_query``):
        ``joint`` float32 [384] unit norm; ``visual`` float32 [1280] unit norm when the service maps text
        into the image space (else None); ``tags`` the query's words and word pairs (1.0 each) joined by the
        detector labels its words name through WordNet, at their weight."""
        response = self.call(self.embedding, "EmbedText", embedding_pb2.EmbedTextRequest(texts=[text], as_query=True))
        visual = np.asarray(response.visual_vectors[0].values, dtype=np.float32) if response.visual_vectors else None
        tags = text_tags(text)
        if response.concepts:
            for label, weight in response.concepts[0].tags.items():
                tags[label] = max(tags.get(label, 0.0), weight)
        return Query(
            "text", joint=np.asarray(response.vectors[0].values, dtype=np.float32), visual=visual, text=text, tags=tags
        )

    def embed_regions(self, image: common_pb2.Image, boxes: Sequence[common_pb2.Box]) -> list[np.ndarray]:
        """Embeddings (float32 [1280], unit norm) of boxes of one image, in order."""
        response = self.call(
            self.embedding, "EmbedRegions", embedding_pb2.EmbedRegionsRequest(image=image, boxes=boxes)
        )
        return [np.asarray(v.values, dtype=np.float32) for v in response.vectors]

    # --- the cascade ----------------------------------------------------------------------------

    def begin(
        self, image: common_pb2.Image, plan: SignalPlan, start: float, region: common_pb2.Box | None = None
    ) -> PendingImage:
        """Start understanding an image query (see the module doc): the embedding, the pixel signals and the
        objects start now, concurrently. ``start``: the request's ``time.perf_counter()``."""
        return PendingImage(self, image, plan, start, region)

    def image(
        self, image: common_pb2.Image, plan: SignalPlan, start: float, region: common_pb2.Box | None = None
    ) -> UnderstoodImage:
        """Understand an image query in one go (:meth:`begin`, then :meth:`PendingImage.finish`).

        Raises:
            VisearchError: the required embedding failed (INVALID_ARGUMENT for a bad image, UNAVAILABLE when
                the embedding service is down); every other signal is skipped instead.
        """
        return self.begin(image, plan, start, region).finish()

    def _pixels(self, image: common_pb2.Image, plan: SignalPlan, region: common_pb2.Box | None) -> _Pixels:
        """Draft decode, main photo, colours, pHash, and the downscaled JPEG for OCR (on the main photo when framed)."""
        data = image_bytes(image, self.image_settings)
        small = decode_image(data, self.image_settings, min_side=PIXEL_MIN_SIDE)
        full_size = small.info["original_size"]
        scale = small.width / full_size[0]
        box: tuple[int, int, int, int] | None = None
        if region is not None:  # clipped to the image, as EmbedImage clips its crop
            x1, y1 = max(0, round(region.x1 * scale)), max(0, round(region.y1 * scale))
            x2, y2 = min(small.width, round(region.x2 * scale)), min(small.height, round(region.y2 * scale))
            focus_box = (x1, y1, max(x2, x1 + 1), max(y2, y1 + 1))
        else:
            found = main_region(small) if plan.framing else None
            if found is not None:
                x1, y1, x2, y2 = (int(round(v / scale)) for v in found)
                box = (max(0, x1), max(0, y1), min(full_size[0], x2), min(full_size[1], y2))
            focus_box = found or (0, 0, small.width, small.height)
        focus = small.crop(focus_box)
        colours = dominant_colours(focus, self.colours) if plan.pixels else []
        text, looked = None, False
        if plan.text and self.ocr is not None and likely_text(focus, TEXT_MIN_LINES):
            looked = True
            side = self.settings.query_ocr_max_side
            # OCR reads at least side / 2 px (decoded again when the check's copy is smaller; rare: most photos
            # have no text).
            larger = (
                small if min(small.size) >= side // 2 else decode_image(data, self.image_settings, min_side=side // 2)
            )
            ratio = larger.width / small.width
            copy = larger.crop(tuple(round(v * ratio) for v in focus_box))
            if max(copy.size) > side:
                copy = copy.resize(
                    (
                        max(1, round(copy.width * side / max(copy.size))),
                        max(1, round(copy.height * side / max(copy.size))),
                    ),
                    Image.Resampling.BILINEAR,
                )
            buffer = io.BytesIO()
            copy.save(buffer, format="JPEG", quality=OCR_JPEG_QUALITY)
            text = self.pool.submit(_stamped, self._read_text, buffer.getvalue())  # overlaps the rest and the embedding
        objects = None
        if plan.object_tags and not plan.objects and self.detection is not None:
            if focus.size == small.size and small.width == full_size[0]:
                source = image  # the whole image at full size: the original bytes, not a re-encoded copy
            else:
                buffer = io.BytesIO()
                focus.save(buffer, format="JPEG", quality=OCR_JPEG_QUALITY)
                source = common_pb2.Image(content=buffer.getvalue())
            objects = self.pool.submit(_stamped, self._detect, source)
        return _Pixels(
            objects=objects,
            colour=colour_descriptor(focus) if plan.pixels else None,
            colour_tags={c.name.lower(): c.fraction for c in colours},
            phash=perceptual_hash(focus) if plan.pixels else 0,
            box=box,
            text=text,
            no_text=plan.text and not looked,
        )

    def _classes(self, embedded: embedding_pb2.ImageEmbedding, timeout: float) -> common_pb2.Classification:
        """Taxonomy, concept tags and the objects the classes imply, from an ImageEmbedding's class probabilities
        and joint vector."""
        request = classification_pb2.ClassifyRequest(
            precomputed=[classification_pb2.PrecomputedSignals(class_probs=embedded.class_probs, joint=embedded.joint)],
            parts=[
                classification_pb2.CLASSIFY_PART_TAXONOMY,
                classification_pb2.CLASSIFY_PART_CONCEPTS,
                classification_pb2.CLASSIFY_PART_CLASS_OBJECTS,
            ],
        )
        return self.call(self.classification, "Classify", request, timeout=max(timeout, 0.001)).results[0]

    def _read_text(self, jpeg: bytes) -> str:
        request = ocr_pb2.ReadRequest(
            images=[common_pb2.Image(content=jpeg)], det_max_side=self.settings.query_ocr_max_side
        )
        return " ".join(self.call(self.ocr, "Read", request).results[0].text.split())

    def _detect(self, image: common_pb2.Image) -> detection_pb2.ImageDetections:
        """The detection service's objects of the query image."""
        if self.detection is None:
            raise DependencyUnavailableError(
                "the query's objects need the detection service (VISEARCH_DETECTION_ADDR)",
                reason="detection_unavailable",
            )
        return self.call(self.detection, "Detect", detection_pb2.DetectRequest(images=[image])).results[0]

    def _objects(
        self, image: common_pb2.Image, with_regions: bool
    ) -> tuple[list[common_pb2.Detection], list[QueryObject]]:
        """The query's detections and, ``with_regions``, the objects the indexer would make regions of, with
        their embeddings."""
        result = self._detect(image)
        keep = (
            [
                result.detections[i]
                for i in select_regions(result.detections, result.width, result.height, self.detection_settings)
            ]
            if with_regions
            else []
        )
        vectors = self.embed_regions(image, [d.box for d in keep]) if keep else []
        return list(result.detections), [QueryObject(d, v) for d, v in zip(keep, vectors)]


class PendingImage:
    """An image query being understood: :meth:`visual` as soon as the embedding is ready (so the search can
    start its routes), :meth:`finish` for every other signal, each within its budget."""

    def __init__(
        self,
        owner: QueryUnderstanding,
        image: common_pb2.Image,
        plan: SignalPlan,
        start: float,
        region: common_pb2.Box | None,
    ) -> None:
        self.owner, self.image, self.plan, self.region = owner, image, plan, region
        self.report = _Report(start, owner.settings.signal_budgets_ms)
        pool = owner.pool
        self._embedded = pool.submit(_stamped, owner.embed_image, image, region, plan.classes)
        # REGION_MODE_QUERY_OBJECTS detects on the original (its boxes become region queries); the object tags
        # alone are detected on the pixel step's small copy (the detector letterboxes to 512 px anyway).
        self._objects = pool.submit(_stamped, owner._objects, image, True) if plan.objects else None
        self._pixels = (
            pool.submit(_stamped, owner._pixels, image, plan, region)
            if plan.pixels or plan.framing or plan.text
            else None
        )
        self._whole: embedding_pb2.ImageEmbedding | None = None

    def visual(self) -> np.ndarray:
        """The query's embedding (float32 [1280], unit norm), waiting for it.

        Raises:
            VisearchError: the embedding failed (the request's error: a bad image, the service down).
        """
        if self._whole is None:
            self._whole, ready = self._embedded.result()
            self.report.used("image_embedding", ready)
        return np.asarray(self._whole.image.values, dtype=np.float32)

    def finish(self) -> UnderstoodImage:
        """Every planned signal, each joined within its budget or skipped (the report says which)."""
        owner, plan, report = self.owner, self.plan, self.report
        query = Query("image", visual=self.visual())
        out = UnderstoodImage(query)
        found = report.join("pixels", self._pixels) if self._pixels is not None else None
        main = None
        if found is not None:
            if plan.pixels:
                query.colour, query.phash = found.colour, found.phash
                query.tags.update(found.colour_tags)
            if found.box is not None:
                x1, y1, x2, y2 = found.box
                box = common_pb2.Box(x1=x1, y1=y1, x2=x2, y2=y2)
                main = report.join(
                    "main_region_embedding",
                    owner.pool.submit(_stamped, owner.embed_image, self.image, box, plan.classes),
                )
                if main is not None:  # reported only when it is searched
                    out.main_region = box
                    query.main_visual = np.asarray(main.image.values, dtype=np.float32)
        pending_text = found.text if found is not None else None
        if plan.classes:
            source = main if main is not None else self._whole
            if owner.classification is None:
                report.skipped("classes", "unavailable")
            else:  # joined within its budget, whatever the stub does with its timeout (an in-process one ignores it)
                result = report.join(
                    "classes", owner.pool.submit(_stamped, owner._classes, source, report.remaining("classes"))
                )
                if result is not None:
                    for a in result.attributes:  # a value can come twice (object and concept "cat"): the best score
                        if a.name in TAG_ATTRIBUTES and a.value:
                            key = a.value.lower()
                            query.tags[key] = max(query.tags.get(key, 0.0), a.score)
                    query.taxonomy = TAXONOMY_SEPARATOR.join(node.name for node in result.taxonomy)
        if plan.text:
            if owner.ocr is None:
                report.skipped("text", "unavailable")
            elif found is None:  # the pixel step it starts from was skipped: for the same reason
                report.skipped("text", report.reason("pixels"))
            elif found.no_text:
                report.skipped("text", "no_text")
            else:
                # The words feed BM25 (a label or title in the photo matches the item's linked text); they do not
                # become a joint-space query: overlaid text says little about what the image shows (docs/quality.md).
                assert pending_text is not None  # the pixel step looked for text, so it started the OCR
                query.text = report.join("text", pending_text) or ""
        detections: list[common_pb2.Detection] = []
        if self._objects is not None:
            found_objects = report.join("objects", self._objects)
            if found_objects is not None:
                detections, out.objects = found_objects
        elif plan.object_tags:
            if owner.detection is None:
                report.skipped("objects", "unavailable")
            elif found is None or found.objects is None:
                report.skipped("objects", report.reason("pixels"))
            else:
                image_detections = report.join("objects", found.objects)
                detections = list(image_detections.detections) if image_detections is not None else []
        if plan.object_tags:  # as the classifier tags an indexed image: each label with its best score
            for d in detections:
                key = d.label.lower()
                query.tags[key] = max(query.tags.get(key, 0.0), d.score)
        out.signals = report.signals
        return out


_T = TypeVar("_T")


def _stamped(fn: Callable[..., _T], *args: Any) -> tuple[_T, float]:
    """``(fn(*args), time.perf_counter())``: a signal's result with the moment it was ready."""
    return fn(*args), time.perf_counter()


class _Report:
    """Deadlines and the signal report of one query."""

    def __init__(self, start: float, budgets_ms: dict[str, float]) -> None:
        self.start = start
        self.budgets_ms = budgets_ms
        self.signals: list[search_pb2.QuerySignal] = []

    def _elapsed_ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000

    def remaining(self, name: str) -> float:
        """Seconds left in ``name``'s budget (<= 0: past it)."""
        return (self.budgets_ms.get(name, 1000.0) - self._elapsed_ms()) / 1000

    def reason(self, name: str) -> str:
        """Why signal ``name`` was skipped ("failed" when it is not in the report)."""
        return next((s.skipped for s in self.signals if s.name == name and not s.used), "failed")

    def used(self, name: str, ready: float | None = None) -> None:
        """Record ``name`` as used; ``ready``: the ``perf_counter()`` when it was ready (default: now)."""
        took = (ready - self.start) * 1000 if ready is not None else self._elapsed_ms()
        self.signals.append(search_pb2.QuerySignal(name=name, used=True, took_ms=took))

    def skipped(self, name: str, reason: str) -> None:
        self.signals.append(search_pb2.QuerySignal(name=name, used=False, skipped=reason, took_ms=self._elapsed_ms()))

    def join(self, name: str, future: Future[tuple[_T, float]]) -> _T | None:
        """The result of a :func:`_stamped` future within ``name``'s budget, or None (the signal skipped, its
        reason recorded)."""
        try:
            result, ready = future.result(timeout=max(self.remaining(name), 0.0))
        except FutureTimeout:
            future.cancel()
            self.skipped(name, "deadline")
            log.info("query_signal_skipped", signal=name, reason="deadline")
            return None
        except VisearchError as exc:
            self.skipped(
                name,
                "deadline"
                if "DEADLINE_EXCEEDED" in str(exc)
                else "unavailable"
                if exc.reason in ("dependency_unavailable", "detection_unavailable")
                else "failed",
            )
            log.warning("query_signal_skipped", signal=name, reason=exc.reason, error=str(exc))
            return None
        self.used(name, ready)
        return result
