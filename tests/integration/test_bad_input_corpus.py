"""Every kind of the bad-input corpus (tests/badinput/corpus.py) gets its precise outcome:

* gRPC path: the real servicers (EmbedImage, Detect, Classify, Search, SimilarTo) called the way a gRPC
  server calls them (``rpc_method`` with a context whose ``abort`` raises) answer a bad image with the
  exact status code and a message naming the reason, and an unusual-but-valid one with a result;
* pipeline path: the embedded platform's real stage workers (detection -> embedding -> indexer,
  Milvus Lite) dead-letter each bad image and bad event with its reason, index the good ones, and keep
  working afterwards;
* memory stays bounded while the decompression bombs and the 10,000 x 1 strips go through both paths.

About 20 s (models and Milvus Lite start-up included).
"""

from __future__ import annotations

import math
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.badinput.corpus import EVENT_CASES, IMAGE_CASES, EventCase, ImageCase, Photos, markdown_table, upsert
from visearch.embedded import EmbeddedPlatform
from visearch.services.classification.classifier import Classifier
from visearch.services.classification.service import ClassificationService
from visearch.shared.config import ClassificationSettings, ImageSettings, ModelSettings, ServiceSettings, StoreSettings
from visearch.shared.errors import InvalidEventError
from visearch.shared.pipeline import Stage, StageWorker, encode_event
from visearch.shared.transport import HEADER_DLQ_REASON, HEADER_DLQ_STAGE, InProcessTransport, dlq_topic
from visearch.v1 import classification_pb2, common_pb2, detection_pb2, embedding_pb2, events_pb2, search_pb2

TENANT = "corpus"
# The corpus's file-URI cases (a 20 MiB file, a missing file) need file URIs; services default to refusing them.
SETTINGS = ImageSettings(allow_file_uris=True)
BAD_IMAGES = [c for c in IMAGE_CASES if not c.ok]
GOOD_IMAGES = [c for c in IMAGE_CASES if c.ok]
BOMBS = [c for c in IMAGE_CASES if c.reason == "decompression_bomb"]
STRIPS = [c for c in GOOD_IMAGES if c.size and max(c.size) >= 10000]  # 10,000 x 1: resizing it whole took 2 GB
FIRST_IMAGE_STAGE = "detection"  # the first stage of the chain below that decodes images
STAGES = ["detection", "embedding", "indexer"]
# One decoded bomb would take 800 MB (16,384^2 WebP) to 1.2 GB (20,000^2 PNG).
RSS_GROWTH_LIMIT_MB = 64

models = pytest.mark.models
milvus_lite = pytest.mark.milvus_lite


class Aborted(Exception):
    """What FakeContext.abort raises (grpc.ServicerContext.abort raises too)."""


class FakeContext:
    """The part of grpc.ServicerContext that rpc_method uses: ``abort(code, details)`` and
    ``abort_with_status(status)`` (a VisearchError's status with its ErrorInfo) record and raise."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted(details)

    def abort_with_status(self, status: grpc.Status) -> None:
        self.abort(status.code, status.details)


def call(method, request) -> tuple[str, str, object]:
    """Call a servicer method as a gRPC server would: ``(status name, details, response or None)``."""
    context = FakeContext()
    try:
        return "OK", "", method(request, context)
    except Aborted:
        return context.code.name, context.details, None


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def corpus_photos(tmp_path_factory) -> Photos:
    return Photos(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def images(corpus_photos) -> dict[str, common_pb2.Image]:
    """Every image case, made once (the 20 MiB file and the bombs take a few seconds to build)."""
    return {case.kind: case.make(corpus_photos) for case in IMAGE_CASES}


@pytest.fixture(scope="module")
def platform(built_models, tmp_path_factory):
    """Detection, embedding and the indexer on Milvus Lite, with the search API over them."""
    db = tmp_path_factory.mktemp("corpus-db") / "corpus.db"
    with EmbeddedPlatform(
        StoreSettings(uri=str(db)),
        service_settings=ServiceSettings(tenant=TENANT),
        stages=STAGES,
        image_settings=SETTINGS,
    ) as platform:
        yield platform


@pytest.fixture(scope="module")
def classification(platform) -> ClassificationService:
    """Classify over the real classifier (no detection/OCR stubs: only the image's own attributes)."""
    classifier = Classifier.from_cache(ModelSettings(), ClassificationSettings(), platform.embedder)
    return ClassificationService(classifier, SETTINGS)


def image_calls(platform, classification, image: common_pb2.Image) -> dict[str, tuple[str, str, object]]:
    """Each gRPC method that takes an image, called with ``image``."""
    calls = {
        "EmbedImage": call(platform.embedding.EmbedImage, embedding_pb2.EmbedImageRequest(images=[image])),
        "Detect": call(platform.detection.Detect, detection_pb2.DetectRequest(images=[image])),
        "Classify": call(classification.Classify, classification_pb2.ClassifyRequest(images=[image])),
        "Search": call(platform.search.Search, search_pb2.SearchRequest(image=image, top_k=5, tenant=TENANT)),
    }
    # SimilarTo reads the image itself (not through EmbedImage): read_uri's messages do not all name
    # their reason, so only inline images and the empty Image message are checked there.
    if image.WhichOneof("source") != "uri":
        calls["SimilarTo"] = call(
            platform.search.SimilarTo, search_pb2.SimilarToRequest(image=image, top_k=5, tenant=TENANT)
        )
    return calls


# --------------------------------------------------------------------------------------------- gRPC path


@models
@milvus_lite
@pytest.mark.parametrize("case", BAD_IMAGES, ids=lambda c: c.kind)
def test_bad_image_gets_exact_status_and_reason_from_every_api(platform, classification, images, case):
    """EmbedImage, Detect, Classify, Search and SimilarTo all refuse it with its status, naming its reason."""
    for method, (status, details, _) in image_calls(platform, classification, images[case.kind]).items():
        assert (status, case.reason in details) == (case.status, True), f"{method}: {status} {details!r}"


@models
@milvus_lite
def test_unusual_valid_images_are_answered(platform, classification, images):
    """Each valid-but-unusual image gets a unit-norm embedding, detections at its decoded (upright) size,
    a classification and search answers."""
    kinds = [c.kind for c in GOOD_IMAGES]
    request_images = [images[k] for k in kinds]
    status, details, embedded = call(
        platform.embedding.EmbedImage, embedding_pb2.EmbedImageRequest(images=request_images)
    )
    assert status == "OK", details
    for kind, embedding in zip(kinds, embedded.embeddings, strict=True):
        vector = np.asarray(embedding.image.values)
        assert vector.shape == (1280,) and np.isfinite(vector).all(), kind
        assert math.isclose(np.linalg.norm(vector), 1, rel_tol=1e-3), kind
    status, details, detected = call(platform.detection.Detect, detection_pb2.DetectRequest(images=request_images))
    assert status == "OK", details
    for case, result in zip(GOOD_IMAGES, detected.results, strict=True):
        assert (result.width, result.height) == case.size, case.kind
    for start in range(0, len(kinds), 16):  # Classify takes at most 16 images per request
        status, details, classified = call(
            classification.Classify, classification_pb2.ClassifyRequest(images=request_images[start : start + 16])
        )
        assert status == "OK", details
        assert all(result.colours and result.attributes for result in classified.results)
    for case in GOOD_IMAGES[:4] + STRIPS:
        for method, (status, details, _) in image_calls(platform, classification, images[case.kind]).items():
            assert status == "OK", f"{case.kind} {method}: {details}"


# --------------------------------------------------------------------------------------------- pipeline path


def publish_corpus(platform, corpus_photos, images) -> dict[str, EventCase | ImageCase]:
    """Publish every image case (as an upsert) and every event case; returns message key -> case."""
    by_key: dict[str, EventCase | ImageCase] = {}
    for case in IMAGE_CASES:
        event = events_pb2.ImageEvent(
            image_id=f"img-{case.kind}",
            kind=events_pb2.ImageEvent.KIND_UPSERT,
            image=images[case.kind],
            product=events_pb2.Product(title=case.description),
        )
        platform.publish(event)
        by_key[event.image_id] = case
    for case in EVENT_CASES:
        if case.stage == "publish":
            continue
        raw = case.make(corpus_photos)
        platform.transport.produce(platform.input_topic, case.kind.encode(), raw.value, raw.headers)
        by_key[case.kind] = case
    return by_key


def dead_letters(platform) -> dict[str, tuple[str, str]]:
    """Message key -> (reason, stage) of every dead letter of the chain."""
    letters = {}
    for worker in platform.workers:
        for message in platform.transport.messages(dlq_topic(worker.input_topic)):
            letters[message.key.decode()] = (message.headers[HEADER_DLQ_REASON], message.headers[HEADER_DLQ_STAGE])
    return letters


@models
@milvus_lite
def test_pipeline_dead_letters_each_bad_input_with_its_reason_and_keeps_going(platform, corpus_photos, images):
    """Every bad image and event is dead-lettered by the stage that should refuse it, with its reason; every
    good one is indexed; afterwards the workers still process new events and nothing is left uncommitted."""
    by_key = publish_corpus(platform, corpus_photos, images)
    for worker in platform.workers:
        worker.drain()  # raises if a worker would crash (a bug, or a DLQ-policy trip)
    first = platform.workers[0].stage.name
    where = {"decode": first, "image": FIRST_IMAGE_STAGE, "indexer": "indexer"}
    expected = {
        key: (case.reason, where[getattr(case, "stage", "image")]) for key, case in by_key.items() if not case.ok
    }
    assert dead_letters(platform) == expected

    store = platform.store
    for case in GOOD_IMAGES:
        assert store.get(TENANT, f"img-{case.kind}") is not None, case.kind
    for case in EVENT_CASES:
        raw = case.make(corpus_photos)
        if case.ok and raw.event.kind == events_pb2.ImageEvent.KIND_UPSERT:
            row = store.get(TENANT, raw.image_id)
            assert row is not None and row["image_id"] == raw.image_id, case.kind
            store.delete(TENANT, [raw.image_id])  # odd ids must be deletable too
            assert store.get(TENANT, raw.image_id) is None, case.kind

    # The workers survived: a good event published after the corpus goes all the way through.
    platform.publish(upsert(corpus_photos, "after-the-corpus"))
    for worker in platform.workers:
        worker.drain()
    assert store.get(TENANT, "after-the-corpus") is not None
    assert all(platform.transport.lag(w.input_topic, w.group) == 0 for w in platform.workers)


def vm_kb(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmRSS: resident now; VmHWM: peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_bombs_and_strips(platform, classification, images, tag: str) -> None:
    """Every bomb and thin strip through every gRPC method and the pipeline, with its expected outcome."""
    for case in BOMBS + STRIPS:
        for method, (status, details, _) in image_calls(platform, classification, images[case.kind]).items():
            assert status == case.status and (case.ok or case.reason in details), (case.kind, method, details)
        platform.publish(
            events_pb2.ImageEvent(
                image_id=f"{tag}-{case.kind}", kind=events_pb2.ImageEvent.KIND_UPSERT, image=images[case.kind]
            )
        )
    results = [worker.drain() for worker in platform.workers]
    assert results[0] == (len(STRIPS), len(BOMBS)) and results[-1] == (len(STRIPS), 0)


@models
@milvus_lite
def test_memory_stays_bounded_over_decompression_bombs(platform, classification, images):
    """The bombs (refused) and the 10,000 x 1 strips (accepted) go through every gRPC method and the
    pipeline three times; the process's peak RSS (VmHWM, reset after a warm-up round) grows by less
    than RSS_GROWTH_LIMIT_MB."""
    assert len(BOMBS) >= 8 and len(STRIPS) == 2
    run_bombs_and_strips(platform, classification, images, "warm-up")  # first calls allocate caches and pools
    peak_known = reset_peak_rss()
    before = vm_kb("VmRSS")
    for round_ in range(3):
        run_bombs_and_strips(platform, classification, images, f"round-{round_}")
    growth_mb = ((vm_kb("VmHWM") if peak_known else vm_kb("VmRSS")) - before) / 1024
    print(f"peak RSS growth over {3 * len(BOMBS + STRIPS)} bombs and strips: {growth_mb:.1f} MB")
    assert growth_mb < RSS_GROWTH_LIMIT_MB, f"{'peak' if peak_known else 'resident'} RSS grew {growth_mb:.0f} MB"


# --------------------------------------------------------------------------------------------- publisher / worker limits


def test_publisher_refuses_an_oversized_message(corpus_photos):
    """An event over VISEARCH_KAFKA_MAX_MESSAGE_BYTES is refused before it is sent, with a clear error
    (INVALID_ARGUMENT, reason message_too_large); under a larger configured limit it goes."""
    (case,) = [c for c in EVENT_CASES if c.stage == "publish"]
    event = case.make(corpus_photos).event
    with pytest.raises(InvalidEventError) as info:
        encode_event(event)
    assert info.value.reason == case.reason and info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "VISEARCH_KAFKA_MAX_MESSAGE_BYTES" in str(info.value) and "by URI" in str(info.value)
    _, value, _ = encode_event(event, max_message_bytes=32 * 1024 * 1024)
    assert len(value) > 11 * 1024 * 1024


class Grow(Stage):
    """Adds ``extra`` bytes to each document whose image id starts with 'big'."""

    name = "grow"

    def __init__(self, extra: int) -> None:
        self.extra = extra

    def process(self, documents):
        for doc in documents:
            if doc.event.image_id.startswith("big"):
                doc.event.product.description = "d" * self.extra
        return documents


def test_worker_dead_letters_an_output_over_the_message_limit():
    """A stage that makes a document too big for the output topic dead-letters that one document
    (``message_too_large``) instead of failing the produce forever; the others go on."""
    transport, limit = InProcessTransport(), 64 * 1024
    for image_id in ("small-1", "big-1", "small-2"):
        transport.produce(
            "in", *encode_event(events_pb2.ImageEvent(image_id=image_id, kind=events_pb2.ImageEvent.KIND_DELETE))
        )
    worker = StageWorker(Grow(extra=limit), transport, "in", "out", max_message_bytes=limit)
    assert worker.drain() == (2, 1)
    assert [m.key for m in transport.messages("out")] == [b"small-1", b"small-2"]
    (letter,) = transport.messages(dlq_topic("in"))
    assert (letter.key, letter.headers[HEADER_DLQ_REASON]) == (b"big-1", "message_too_large")
    assert transport.lag("in", worker.group) == 0


# --------------------------------------------------------------------------------------------- docs


def test_corpus_has_at_least_thirty_kinds_with_unique_names():
    kinds = [c.kind for c in IMAGE_CASES] + [c.kind for c in EVENT_CASES]
    assert len(kinds) >= 30 and len(set(kinds)) == len(kinds)


def test_reliability_doc_lists_the_corpus():
    """docs/reliability.md's "Bad input" section holds the table generated from the corpus
    (regenerate it with ``python -m tests.badinput.corpus --write``)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    section = doc.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    assert markdown_table() in section
