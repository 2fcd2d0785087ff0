"""Query understanding (services/ranking/understanding.py): the signal cascade of an image query with
in-memory stand-in stubs (EmbedImage, EmbedText, EmbedRegions, Classify, Read, Detect, each taking
``(request, timeout=...)`` and answering real visearch.v1 messages) on a real thread pool: which calls it
makes and with what, each signal's deadline and failure reported in the signal list, the main photo of a
framed query, and the required embedding's failure."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from visearch.offline.datasets import photo_catalogue
from visearch.services.ranking.understanding import TEXT_MIN_LINES, QueryUnderstanding, SignalPlan
from visearch.shared.config import DetectionSettings, ImageSettings, RankingSettings
from visearch.shared.errors import DependencyUnavailableError, InvalidImageError, VisearchError
from visearch.shared.text_presence import text_lines
from visearch.v1 import (
    classification_pb2,
    common_pb2,
    detection_pb2,
    embedding_pb2,
    ocr_pb2,
)

GENEROUS = {"pixels": 5000.0, "main_region_embedding": 5000.0, "classes": 5000.0, "text": 5000.0, "objects": 5000.0}
PAGE_SIZE = (1400, 900)
PASTE_AT = (100, 150)


def unit(values) -> list[float]:
    v = np.asarray(values, dtype=np.float32)
    return (v / np.linalg.norm(v)).tolist()


WHOLE = unit([1, 0, 0, 0])
CROPPED = unit([0, 1, 0, 0])
PROBS = [0.7, 0.2, 0.1]
CROP_PROBS = [0.1, 0.1, 0.8]
JOINT = unit([0, 0, 1])
CROP_JOINT = unit([1, 1, 0])


class Recorder:
    """Records every call (method, request, timeout) under a lock; ``fail``/``sleep`` per method."""

    def __init__(self, fail: dict | None = None, sleep: dict | None = None) -> None:
        self.calls: list[tuple[str, object, float | None]] = []
        self.fail, self.sleep = fail or {}, sleep or {}
        self.lock = threading.Lock()
        self.slept: list[str] = []  # methods whose sleep ended

    def _record(self, method: str, request, timeout) -> None:
        with self.lock:
            self.calls.append((method, request, timeout))
        if method in self.sleep:
            time.sleep(self.sleep[method])
            with self.lock:
                self.slept.append(method)
        if method in self.fail:
            raise self.fail[method]

    def requests(self, method: str) -> list:
        with self.lock:
            return [r for m, r, _ in self.calls if m == method]


class FakeEmbedding(Recorder):
    def EmbedImage(self, request, timeout=None):  # noqa: N802
        self._record("EmbedImage", request, timeout)
        crop = request.crops[0] if request.crops else None
        cropped = crop is not None and (crop.x2 > crop.x1)
        embedding = embedding_pb2.ImageEmbedding(
            image=common_pb2.Vector(values=CROPPED if cropped else WHOLE),
            joint=common_pb2.Vector(values=CROP_JOINT if cropped else JOINT),
        )
        if request.class_probs:
            embedding.class_probs.values.extend(CROP_PROBS if cropped else PROBS)
        return embedding_pb2.EmbedImageResponse(embeddings=[embedding])

    def EmbedText(self, request, timeout=None):  # noqa: N802
        self._record("EmbedText", request, timeout)
        return embedding_pb2.EmbedTextResponse(vectors=[common_pb2.Vector(values=JOINT) for _ in request.texts])

    def EmbedRegions(self, request, timeout=None):  # noqa: N802
        self._record("EmbedRegions", request, timeout)
        return embedding_pb2.EmbedRegionsResponse(
            vectors=[common_pb2.Vector(values=unit([1, 1, n + 1, 0])) for n, _ in enumerate(request.boxes)]
        )


class FakeClassification(Recorder):
    def Classify(self, request, timeout=None):  # noqa: N802
        self._record("Classify", request, timeout)
        result = common_pb2.Classification(
            taxonomy=[common_pb2.TaxonomyNode(name="animal"), common_pb2.TaxonomyNode(name="cat")],
            attributes=[
                common_pb2.Attribute(name="object", value="cat", score=0.9),
                common_pb2.Attribute(name="concept", value="Tabby", score=0.7),
                common_pb2.Attribute(name="concept", value="cat", score=0.5),
                common_pb2.Attribute(name="quality", value="sharp", score=0.9),
            ],
        )
        return classification_pb2.ClassifyResponse(results=[result])


class FakeOcr(Recorder):
    def Read(self, request, timeout=None):  # noqa: N802
        self._record("Read", request, timeout)
        return ocr_pb2.ReadResponse(results=[ocr_pb2.ImageText(text="SUMMER\n SALE  -50%")])


class FakeDetection(Recorder):
    def Detect(self, request, timeout=None):  # noqa: N802
        self._record("Detect", request, timeout)
        return detection_pb2.DetectResponse(
            results=[
                detection_pb2.ImageDetections(
                    width=PAGE_SIZE[0],
                    height=PAGE_SIZE[1],
                    detections=[
                        common_pb2.Detection(
                            label="cat", score=0.9, box=common_pb2.Box(x1=100, y1=100, x2=600, y2=500)
                        ),
                        common_pb2.Detection(label="speck", score=0.9, box=common_pb2.Box(x1=0, y1=0, x2=2, y2=2)),
                    ],
                )
            ]
        )


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code.name)
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return "stand-in"


class DeadlineClassification(FakeClassification):
    """Honours its deadline like a gRPC stub: past ``timeout`` it fails with DEADLINE_EXCEEDED."""

    def Classify(self, request, timeout=None):  # noqa: N802
        with self.lock:
            self.calls.append(("Classify", request, timeout))
        if timeout is not None and timeout < 0.3:
            time.sleep(timeout)
            raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED)
        time.sleep(0.3)
        return super().Classify(request, timeout)


# --- images ------------------------------------------------------------------------------------------------------


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _photo(name: str = "photo-coffee") -> Image.Image:
    (item,) = [p for p in photo_catalogue() if p.image_id == name]
    return Image.open(item.uri).convert("RGB")


CAPTION = ("SUMMER SALE", "Tabby cushion", "EUR 19.99")


def _caption(image: Image.Image, lines, size: int, origin=(50, 30), band: bool = True) -> None:
    """Black lines of text on ``image`` (on a white band), in place: something for the OCR gate to see."""
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=size)
    x, y = origin
    if band:
        draw.rectangle((x - 20, y - 10, x + 480, y + 10 + 1.4 * size * len(lines)), fill="white")
    for n, line in enumerate(lines):
        draw.text((x, y + 1.4 * size * n), line, fill="black", font=font)


@pytest.fixture(scope="module")
def page() -> tuple[common_pb2.Image, tuple[int, int, int, int]]:
    """A screenshot-like page: a real photo (with a caption on it) pasted at 40 % of the width into a white
    1400 x 900 canvas, and the pasted photo's box (original pixels)."""
    photo = _photo("photo-coffee")
    width = int(PAGE_SIZE[0] * 0.4)
    photo = photo.resize((width, round(photo.height * width / photo.width)), Image.BILINEAR)
    _caption(photo, CAPTION, 56)
    canvas = Image.new("RGB", PAGE_SIZE, "white")
    canvas.paste(photo, PASTE_AT)
    box = (PASTE_AT[0], PASTE_AT[1], PASTE_AT[0] + photo.width, PASTE_AT[1] + photo.height)
    return common_pb2.Image(content=_jpeg(canvas)), box


@pytest.fixture(scope="module")
def photo() -> common_pb2.Image:
    """An ordinary photo (no frame, no text), 1400 x 900 like the page."""
    return common_pb2.Image(content=_jpeg(_photo("photo-coffee").resize(PAGE_SIZE, Image.BILINEAR)))


@pytest.fixture(scope="module")
def text_card() -> common_pb2.Image:
    """A 1400 x 900 white card with four lines of large text (no photo in it)."""
    card = Image.new("RGB", PAGE_SIZE, "white")
    _caption(card, ("SUMMER SALE -50%", "Tabby cat cushion", "Free delivery", "Order today"), 80, (80, 80), band=False)
    return common_pb2.Image(content=_jpeg(card))


@pytest.fixture
def pool():
    executor = ThreadPoolExecutor(max_workers=6, thread_name_prefix="test-signals")
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)  # a stand-in still sleeping past its budget is not waited for


def understanding(
    pool, embedding=None, classification=None, ocr=None, detection=None, **settings
) -> QueryUnderstanding:
    ranking = RankingSettings(**{"signal_budgets_ms": GENEROUS, **settings})
    return QueryUnderstanding(
        embedding or FakeEmbedding(),
        classification,
        ocr,
        detection,
        ranking,
        ImageSettings(),
        DetectionSettings(),
        deadline_s=5.0,
        pool=pool,
    )


def signals(understood) -> dict[str, tuple[bool, str]]:
    return {s.name: (s.used, s.skipped) for s in understood.signals}


# --- the embedding and the classes -------------------------------------------------------------------------------


def test_class_probabilities_are_requested_only_when_the_classes_are_planned(pool, photo):
    embedding = FakeEmbedding()
    qu = understanding(pool, embedding, FakeClassification())
    understood = qu.image(photo, SignalPlan(), time.perf_counter())
    (request,) = embedding.requests("EmbedImage")
    assert request.class_probs is False and list(request.crops) == [] and list(request.images) == [photo]
    np.testing.assert_allclose(understood.query.visual, WHOLE)
    assert understood.query.kind == "image" and understood.query.main_visual is None
    assert signals(understood) == {"image_embedding": (True, "")}

    embedding = FakeEmbedding()
    understanding(pool, embedding, FakeClassification()).image(photo, SignalPlan(classes=True), time.perf_counter())
    (request,) = embedding.requests("EmbedImage")
    assert request.class_probs is True


def test_classify_reuses_the_embeddings_outputs_and_sends_no_image(pool, photo):
    classification = FakeClassification()
    understood = understanding(pool, FakeEmbedding(), classification).image(
        photo, SignalPlan(classes=True), time.perf_counter()
    )
    (request,) = classification.requests("Classify")
    assert list(request.images) == []
    assert list(request.parts) == [
        classification_pb2.CLASSIFY_PART_TAXONOMY,
        classification_pb2.CLASSIFY_PART_CONCEPTS,
        classification_pb2.CLASSIFY_PART_CLASS_OBJECTS,
    ]
    (pre,) = request.precomputed
    np.testing.assert_allclose(pre.class_probs.values, PROBS)
    np.testing.assert_allclose(pre.joint.values, JOINT)
    assert understood.query.taxonomy == "animal > cat"
    # concept tags and the objects the classes imply, a value named twice at its best score; quality is no tag
    assert understood.query.tags == pytest.approx({"tabby": 0.7, "cat": 0.9})
    assert signals(understood) == {"image_embedding": (True, ""), "classes": (True, "")}


def test_the_pixel_signals_fill_colour_phash_and_colour_tags(pool, photo):
    understood = understanding(pool).image(photo, SignalPlan(pixels=True), time.perf_counter())
    query = understood.query
    assert query.colour is not None and query.colour.ndim == 1
    assert np.linalg.norm(query.colour) == pytest.approx(1.0, abs=1e-3)
    assert query.phash != 0
    assert query.tags and all(0.0 < v <= 1.0 for v in query.tags.values())
    assert signals(understood) == {"image_embedding": (True, ""), "pixels": (True, "")}
    assert understood.main_region is None  # no framing planned


# --- deadlines and failures ----------------------------------------------------------------------------------------


def test_a_text_signal_past_its_budget_is_skipped_and_the_rest_is_kept(pool, text_card):
    ocr = FakeOcr(sleep={"Read": 1.0})
    qu = understanding(pool, FakeEmbedding(), FakeClassification(), ocr, signal_budgets_ms={**GENEROUS, "text": 20.0})
    understood = qu.image(text_card, SignalPlan(pixels=True, classes=True, text=True), time.perf_counter())
    assert "Read" not in ocr.slept  # the search did not wait for the slow OCR
    assert signals(understood) == {
        "image_embedding": (True, ""),
        "pixels": (True, ""),
        "classes": (True, ""),
        "text": (False, "deadline"),
    }
    query = understood.query
    assert query.text == "" and query.taxonomy == "animal > cat" and query.colour is not None and query.phash
    assert len(ocr.requests("Read")) == 1  # it was asked, just too slowly


def test_a_classifier_past_its_deadline_is_skipped_as_deadline(pool, text_card):
    # A gRPC stub honours the deadline the cascade gives it (what is left of the budget).
    classification = DeadlineClassification()
    qu = understanding(
        pool, FakeEmbedding(), classification, FakeOcr(), signal_budgets_ms={**GENEROUS, "classes": 100.0}
    )
    understood = qu.image(text_card, SignalPlan(pixels=True, classes=True, text=True), time.perf_counter())
    assert signals(understood)["classes"] == (False, "deadline")
    assert signals(understood)["text"] == (True, "") and understood.query.text == "SUMMER SALE -50%"
    assert understood.query.taxonomy == "" and understood.query.colour is not None
    # Called (unless the pixels already spent the budget) with what was left of it as the deadline.
    assert all(0 < timeout <= 0.1 for _, _, timeout in classification.calls)


def test_a_classifier_that_ignores_its_timeout_is_still_skipped_at_the_deadline(pool, photo):
    # An in-process stub (embedded mode) ignores the timeout it is given: the budget holds anyway.
    classification = FakeClassification(sleep={"Classify": 1.0})
    qu = understanding(pool, FakeEmbedding(), classification, signal_budgets_ms={**GENEROUS, "classes": 20.0})
    understood = qu.image(photo, SignalPlan(classes=True), time.perf_counter())
    assert signals(understood)["classes"] == (False, "deadline")
    assert "Classify" not in classification.slept  # not waited for
    assert understood.query.taxonomy == ""


def test_text_behind_a_late_pixel_stage_is_skipped_as_deadline(pool, text_card, monkeypatch):
    from visearch.services.ranking import understanding as module

    def slow_check(image, min_lines=1):  # the pixel stage (where OCR starts) runs past its budget
        time.sleep(0.3)
        return True

    monkeypatch.setattr(module, "likely_text", slow_check)
    ocr = FakeOcr()
    qu = understanding(pool, FakeEmbedding(), ocr=ocr, signal_budgets_ms={**GENEROUS, "pixels": 20.0})
    understood = qu.image(text_card, SignalPlan(text=True), time.perf_counter())
    assert signals(understood)["pixels"] == (False, "deadline")
    assert signals(understood)["text"] == (False, "deadline")


def test_a_failing_service_is_skipped_as_unavailable(pool, text_card):
    down = DependencyUnavailableError("down")
    qu = understanding(
        pool,
        FakeEmbedding(),
        FakeClassification(fail={"Classify": down}),
        FakeOcr(fail={"Read": down}),
        FakeDetection(fail={"Detect": down}),
    )
    understood = qu.image(
        text_card, SignalPlan(pixels=True, classes=True, text=True, objects=True), time.perf_counter()
    )
    assert signals(understood) == {
        "image_embedding": (True, ""),
        "pixels": (True, ""),
        "classes": (False, "unavailable"),
        "text": (False, "unavailable"),
        "objects": (False, "unavailable"),
    }
    assert understood.query.colour is not None and understood.objects is None


def test_a_service_refusing_the_image_is_skipped_as_failed(pool, text_card):
    refused = VisearchError("no", reason="undecodable_image")
    qu = understanding(
        pool, FakeEmbedding(), FakeClassification(fail={"Classify": refused}), FakeOcr(fail={"Read": refused})
    )
    understood = qu.image(text_card, SignalPlan(classes=True, text=True), time.perf_counter())
    assert signals(understood)["classes"] == (False, "failed")
    assert signals(understood)["text"] == (False, "failed")


def test_a_grpc_unavailable_error_is_skipped_as_unavailable(pool, photo):
    qu = understanding(
        pool, FakeEmbedding(), FakeClassification(fail={"Classify": FakeRpcError(grpc.StatusCode.UNAVAILABLE)})
    )
    understood = qu.image(photo, SignalPlan(classes=True), time.perf_counter())
    assert signals(understood)["classes"] == (False, "unavailable")


def test_a_missing_service_is_unavailable(pool, photo):
    qu = understanding(pool, FakeEmbedding())  # no classification, OCR or detection stub
    understood = qu.image(photo, SignalPlan(classes=True, text=True, objects=True), time.perf_counter())
    assert signals(understood) == {
        "image_embedding": (True, ""),
        "pixels": (True, ""),
        "classes": (False, "unavailable"),
        "text": (False, "unavailable"),
        "objects": (False, "unavailable"),
    }
    assert understood.query.text == "" and understood.query.taxonomy == ""


def test_an_embedding_failure_fails_the_query(pool, photo):
    bad = InvalidImageError("not an image")
    qu = understanding(pool, FakeEmbedding(fail={"EmbedImage": bad}), FakeClassification(), FakeOcr())
    with pytest.raises(InvalidImageError):
        qu.image(photo, SignalPlan(pixels=True, classes=True, text=True), time.perf_counter())
    pending = qu.begin(photo, SignalPlan(classes=True), time.perf_counter())
    with pytest.raises(InvalidImageError):
        pending.visual()
    with pytest.raises(InvalidImageError):
        pending.finish()


def test_an_embedding_rpc_failure_becomes_the_matching_error(pool, photo):
    qu = understanding(pool, FakeEmbedding(fail={"EmbedImage": FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT)}))
    with pytest.raises(InvalidImageError):
        qu.image(photo, SignalPlan(), time.perf_counter())


# --- framed queries -------------------------------------------------------------------------------------------------


def _close(box: common_pb2.Box, expected: tuple[int, int, int, int], tolerance: float = 12.0) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip((box.x1, box.y1, box.x2, box.y2), expected))


def test_a_framed_query_searches_with_its_main_photo(pool, page):
    image, pasted = page
    embedding, classification = FakeEmbedding(), FakeClassification()
    understood = understanding(pool, embedding, classification).image(
        image, SignalPlan(framing=True, classes=True), time.perf_counter()
    )
    box = understood.main_region
    assert box is not None, "main_region found no photo in the page"
    assert _close(box, pasted), (box, pasted)  # in the original pixels, not the draft decode's
    requests = embedding.requests("EmbedImage")
    assert len(requests) == 2
    assert list(requests[0].crops) == []
    assert list(requests[1].crops) == [box] and list(requests[1].images) == [image]
    assert requests[1].class_probs is True  # the classes come from the main photo
    np.testing.assert_allclose(understood.query.visual, WHOLE)
    np.testing.assert_allclose(understood.query.main_visual, CROPPED)
    (classify,) = classification.requests("Classify")
    np.testing.assert_allclose(classify.precomputed[0].class_probs.values, CROP_PROBS)
    np.testing.assert_allclose(classify.precomputed[0].joint.values, CROP_JOINT)
    assert signals(understood) == {
        "image_embedding": (True, ""),
        "pixels": (True, ""),
        "main_region_embedding": (True, ""),
        "classes": (True, ""),
    }


def test_an_ordinary_photo_has_no_main_region(pool, photo):
    embedding = FakeEmbedding()
    understood = understanding(pool, embedding).image(photo, SignalPlan(framing=True), time.perf_counter())
    assert understood.main_region is None and understood.query.main_visual is None
    assert len(embedding.requests("EmbedImage")) == 1
    assert signals(understood) == {"image_embedding": (True, ""), "pixels": (True, "")}


def test_a_main_photo_embedding_past_its_budget_is_skipped(pool, page):
    image, _ = page

    class SlowCrops(FakeEmbedding):
        def EmbedImage(self, request, timeout=None):  # noqa: N802
            if request.crops:
                time.sleep(0.3)
            return super().EmbedImage(request, timeout)

    qu = understanding(pool, SlowCrops(), signal_budgets_ms={**GENEROUS, "main_region_embedding": 20.0})
    understood = qu.image(image, SignalPlan(framing=True), time.perf_counter())
    assert understood.query.main_visual is None  # the search goes on with the whole image alone
    assert signals(understood)["main_region_embedding"] == (False, "deadline")


# --- OCR of the query ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_side", [480, 128])
def test_ocr_reads_a_small_jpeg_with_the_detector_limited_to_it(pool, text_card, max_side):
    ocr = FakeOcr()
    understood = understanding(pool, FakeEmbedding(), ocr=ocr, query_ocr_max_side=max_side).image(
        text_card, SignalPlan(text=True), time.perf_counter()
    )
    (request,) = ocr.requests("Read")
    assert request.det_max_side == max_side
    (sent,) = request.images
    with Image.open(io.BytesIO(sent.content)) as small:
        assert small.format == "JPEG"
        assert max_side - 1 <= max(small.size) <= max_side
        assert small.size[0] / small.size[1] == pytest.approx(PAGE_SIZE[0] / PAGE_SIZE[1], rel=0.02)
    assert understood.query.text == "SUMMER SALE -50%"  # whitespace collapsed
    assert signals(understood) == {"image_embedding": (True, ""), "pixels": (True, ""), "text": (True, "")}


def test_an_image_without_lines_of_text_is_not_read(pool, photo):
    ocr = FakeOcr()
    understood = understanding(pool, FakeEmbedding(), ocr=ocr).image(photo, SignalPlan(text=True), time.perf_counter())
    assert ocr.calls == []
    assert signals(understood)["text"] == (False, "no_text") and understood.query.text == ""


def test_ocr_of_a_framed_query_reads_the_main_photo(pool, page):
    image, pasted = page
    ocr = FakeOcr()
    understood = understanding(pool, FakeEmbedding(), ocr=ocr).image(
        image, SignalPlan(framing=True, text=True), time.perf_counter()
    )
    assert understood.main_region is not None
    (request,) = ocr.requests("Read")
    with Image.open(io.BytesIO(request.images[0].content)) as small:
        width, height = pasted[2] - pasted[0], pasted[3] - pasted[1]
        assert small.size[0] / small.size[1] == pytest.approx(width / height, rel=0.05)  # the photo, not the page
        assert max(small.size) <= RankingSettings().query_ocr_max_side
        assert text_lines(small) >= TEXT_MIN_LINES  # the caption is in what was read
    assert signals(understood)["text"] == (True, "")


# --- objects ---------------------------------------------------------------------------------------------------------


def test_query_objects_are_detected_and_embedded(pool, photo):
    embedding, detection = FakeEmbedding(), FakeDetection()
    understood = understanding(pool, embedding, detection=detection).image(
        photo, SignalPlan(objects=True), time.perf_counter()
    )
    (detect,) = detection.requests("Detect")
    assert list(detect.images) == [photo]
    (regions,) = embedding.requests("EmbedRegions")
    assert [b.x2 for b in regions.boxes] == [600]  # the speck is below the regions' minimum area
    (obj,) = understood.objects
    assert obj.detection.label == "cat"
    np.testing.assert_allclose(obj.vector, unit([1, 1, 1, 0]))
    assert signals(understood)["objects"] == (True, "")


def test_the_text_embedding_is_one_embed_text_call(pool):
    embedding = FakeEmbedding()
    query = understanding(pool, embedding).embed_text("red shoe")
    (request,) = embedding.requests("EmbedText")
    assert list(request.texts) == ["red shoe"] and request.as_query
    assert query.kind == "text" and query.text == "red shoe" and query.joint.dtype == np.float32
    np.testing.assert_allclose(query.joint, JOINT)
    assert query.visual is None  # the service sent no image-space vector
    assert query.tags == {"red": 1.0, "shoe": 1.0, "red shoe": 1.0}


def test_a_text_query_takes_the_services_visual_vector_and_concept_tags(pool):
    class WithMap(FakeEmbedding):
        def EmbedText(self, request, timeout=None):  # noqa: N802
            response = super().EmbedText(request, timeout)
            response.visual_vectors.add(values=unit([0, 1, 0, 0]))
            response.concepts.add(tags={"bird": 0.8, "sparrow": 0.5}, phrases=["sparrow"], coverage=1.0)
            return response

    query = understanding(pool, WithMap()).embed_text("sparrow")
    np.testing.assert_allclose(query.visual, unit([0, 1, 0, 0]))
    assert query.tags == pytest.approx({"sparrow": 1.0, "bird": 0.8})  # a word of the query keeps its full weight


def test_a_request_region_is_embedded_as_a_crop(pool, photo):
    embedding = FakeEmbedding()
    region = common_pb2.Box(x1=10, y1=20, x2=400, y2=300)
    understood = understanding(pool, embedding).image(photo, SignalPlan(pixels=True), time.perf_counter(), region)
    (request,) = embedding.requests("EmbedImage")
    assert list(request.crops) == [region]
    assert understood.main_region is None and understood.query.colour is not None


def test_the_pixel_signals_of_a_region_partly_outside_the_image_are_of_the_clipped_region(pool):
    plain = common_pb2.Image(content=_jpeg(Image.new("RGB", PAGE_SIZE, (250, 250, 250))))
    qu = understanding(pool)
    inside = qu.image(
        plain, SignalPlan(pixels=True), time.perf_counter(), common_pb2.Box(x1=1000, y1=0, x2=1400, y2=900)
    )
    beyond = qu.image(
        plain, SignalPlan(pixels=True), time.perf_counter(), common_pb2.Box(x1=1000, y1=0, x2=2000, y2=900)
    )
    assert inside.query.tags == {"white": 1.0}
    assert beyond.query.tags == inside.query.tags  # no black padding beyond the image
    assert float(np.dot(beyond.query.colour, inside.query.colour)) == pytest.approx(1.0, abs=1e-3)


def test_object_tags_come_from_detecting_a_small_copy(pool, photo):
    """With object_tags, the detector reads the pixel step's small copy (not the original) and every detected
    label joins the query's tags with its best score; no region embeddings are made."""
    detection, embedding = FakeDetection(), FakeEmbedding()
    understood = understanding(pool, embedding, detection=detection).image(
        photo, SignalPlan(pixels=True, object_tags=True), time.perf_counter()
    )
    (request,) = detection.requests("Detect")
    small = Image.open(io.BytesIO(request.images[0].content))
    assert max(small.size) < PAGE_SIZE[0] and request.images[0].content != photo.content
    assert understood.query.tags["cat"] == pytest.approx(0.9) and understood.query.tags["speck"] == pytest.approx(0.9)
    assert understood.objects is None and not embedding.requests("EmbedRegions")
    assert signals(understood)["objects"] == (True, "")


def test_object_tags_without_a_detection_service_are_unavailable(pool, photo):
    understood = understanding(pool).image(photo, SignalPlan(pixels=True, object_tags=True), time.perf_counter())
    assert signals(understood)["objects"] == (False, "unavailable")
    assert "cat" not in understood.query.tags
