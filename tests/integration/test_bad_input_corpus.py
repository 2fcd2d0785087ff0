"""Every kind of the bad-input corpus (tests/badinput/corpus.py) gets its precise outcome:

* gRPC path: the real servicers (EmbedImage, Detect, Classify, Search, SimilarTo) called the way a gRPC
  server calls them (``rpc_method`` with a context whose ``abort`` raises) answer a bad image with the
  exact status code and a message naming the reason, and an unusual-but-valid one with a result;
* pipeline path: the embedded platform's real stage workers (detection -> embedding -> indexer,
  Milvus Lite) dead-letter each bad image and bad event with its reason, index the good ones, and keep
  working afterwards;
* memory stays bounded while the decompression bombs and the 10,000 x 1 strips go through both paths;
* over the wire (``live``: the services as ``visearch serve`` processes on 127.0.0.1, a real Kafka broker):
  every image of the corpus sent to every real gRPC server that takes images gets its exact status code
  and, in the ``google.rpc.ErrorInfo`` detail of the status, its reason; every image (as an upsert) and
  every event published to the images topic lands in the right DLQ topic with its reason, or reaches the
  indexer; the servers and workers go on serving a valid image afterwards.

About 20 s for the in-process tests (models and Milvus Lite start-up included), about 45 s more for
the ``live`` ones (the broker and six processes start once for both: ~25 s; then ~10 s and ~7 s).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from tests.badinput.corpus import EVENT_CASES, IMAGE_CASES, EventCase, ImageCase, Photos, markdown_table, upsert
from tests.integration.stack import KAFKA_BOOTSTRAP, ScriptManaged, ServiceProcess, wait_until
from visearch.embedded import EmbeddedPlatform
from visearch.services.classification.classifier import Classifier
from visearch.services.classification.service import ClassificationService
from visearch.shared.config import (
    ClassificationSettings,
    ImageSettings,
    KafkaSettings,
    ModelSettings,
    ServiceSettings,
    StoreSettings,
)
from visearch.shared.dlq import read_dead_letters
from visearch.shared.errors import InvalidEventError
from visearch.shared.grpcutil import ERROR_DOMAIN, error_from_rpc
from visearch.shared.kafka import KafkaTransport, create_topics, group_lag, images_topic
from visearch.shared.pipeline import Stage, StageWorker, encode_event
from visearch.shared.transport import HEADER_DLQ_REASON, HEADER_DLQ_STAGE, InProcessTransport, dlq_topic, stage_topics
from visearch.v1 import (
    classification_pb2,
    classification_pb2_grpc,
    common_pb2,
    detection_pb2,
    detection_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    events_pb2,
    ocr_pb2,
    ocr_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)

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


# --------------------------------------------------------------------------------------------- over the wire

LIVE_STAGES = ["detection", "embedding", "indexer"]  # the Kafka chain of the live tests (as in ``platform``)
LIVE_PREFIX = f"c{uuid.uuid4().hex[:8]}"
RPC_TIMEOUT_S = 60.0
WAIT_S = 240.0  # any wait of the live tests; a hang fails, it does not eat CI
# Each gRPC method of the platform that takes an image: (server process, call with one image).
GRPC_METHODS: dict[str, tuple[str, Callable[[grpc.Channel, common_pb2.Image], object]]] = {
    "EmbedImage": (
        "embedding",
        lambda ch, image: embedding_pb2_grpc.EmbeddingServiceStub(ch).EmbedImage(
            embedding_pb2.EmbedImageRequest(images=[image]), timeout=RPC_TIMEOUT_S
        ),
    ),
    "Detect": (
        "detection",
        lambda ch, image: detection_pb2_grpc.DetectionServiceStub(ch).Detect(
            detection_pb2.DetectRequest(images=[image]), timeout=RPC_TIMEOUT_S
        ),
    ),
    "Read": (
        "ocr",
        lambda ch, image: ocr_pb2_grpc.OcrServiceStub(ch).Read(
            ocr_pb2.ReadRequest(images=[image]), timeout=RPC_TIMEOUT_S
        ),
    ),
    "Classify": (
        "classification",
        lambda ch, image: classification_pb2_grpc.ClassificationServiceStub(ch).Classify(
            classification_pb2.ClassifyRequest(images=[image]), timeout=RPC_TIMEOUT_S
        ),
    ),
    "Search": (
        "ranking",
        lambda ch, image: search_pb2_grpc.SearchServiceStub(ch).Search(
            search_pb2.SearchRequest(image=image, top_k=5, tenant=TENANT), timeout=RPC_TIMEOUT_S
        ),
    ),
    "SimilarTo": (
        "ranking",
        lambda ch, image: search_pb2_grpc.SearchServiceStub(ch).SimilarTo(
            search_pb2.SimilarToRequest(image=image, top_k=5, tenant=TENANT), timeout=RPC_TIMEOUT_S
        ),
    ),
}


@pytest.fixture(scope="module")
def live(built_models, tmp_path_factory):
    """A real Kafka broker (deploy/kafka/kafka.sh, as the other Kafka modules start it; stopped afterwards if
    this module started it), this module's topics, and six ``visearch serve`` processes on 127.0.0.1:
    detection and embedding serve gRPC *and* consume the chain detection -> embedding -> indexer (Milvus Lite);
    OCR, classification and ranking (which embeds through the embedding server) serve gRPC only."""
    broker, procs = ScriptManaged("kafka"), {}
    tmp = tmp_path_factory.mktemp("corpus-live")
    env = {
        "VISEARCH_KAFKA_BOOTSTRAP": KAFKA_BOOTSTRAP,
        "VISEARCH_KAFKA_TOPIC_PREFIX": LIVE_PREFIX,
        "VISEARCH_KAFKA_POLL_TIMEOUT_S": "0.5",
        "VISEARCH_KAFKA_MAX_POLL_RECORDS": "16",
        "VISEARCH_PIPELINE_STAGES": ",".join(LIVE_STAGES),
        "VISEARCH_TENANT": TENANT,
        "VISEARCH_LOG_LEVEL": "info",
        "VISEARCH_MODEL_INTRA_OP_THREADS": "1",
        # the corpus's file-URI cases (a 20 MiB file, a missing file) need file URIs, off by default
        "VISEARCH_IMAGE_ALLOW_FILE_URIS": "true",
    }
    grpc_only = {**env, "VISEARCH_KAFKA_BOOTSTRAP": ""}
    try:
        broker.up()
        settings = KafkaSettings(bootstrap=KAFKA_BOOTSTRAP, topic_prefix=LIVE_PREFIX, partitions=2, poll_timeout_s=0.5)
        assert set(create_topics(settings, LIVE_STAGES).values()) == {"created"}
        procs = {name: ServiceProcess(name, env, tmp) for name in ("detection", "embedding")}
        procs["indexer"] = ServiceProcess("indexer", {**env, "VISEARCH_MILVUS_URI": str(tmp / "indexer.db")}, tmp)
        procs["ocr"] = ServiceProcess("ocr", grpc_only, tmp)
        procs["classification"] = ServiceProcess("classification", grpc_only, tmp)
        ranking_env = {**grpc_only, "VISEARCH_MILVUS_URI": str(tmp / "ranking.db")}
        procs["ranking"] = ServiceProcess(
            "ranking", {**ranking_env, "VISEARCH_EMBEDDING_ADDR": procs["embedding"].address}, tmp
        )
        for proc in procs.values():
            proc.start(wait=False)
        for proc in procs.values():
            proc.wait_serving(timeout_s=300)
        yield {"kafka": settings, "procs": procs}
    finally:
        codes = {name: proc.stop() for name, proc in procs.items()}
        broker.down()
    assert set(codes.values()) == {0}, {n: procs[n].log_tail() for n, c in codes.items() if c != 0}


def rpc_outcome(call: Callable[[], object]) -> tuple[str, str | None, str]:
    """``(status code name, ErrorInfo reason, details)`` of a real gRPC call; the reason is read from the
    ``google.rpc.Status`` in the call's trailers (None when it carries no ErrorInfo of visearch's domain)."""
    try:
        call()
        return "OK", None, ""
    except grpc.RpcError as exc:
        status, reason = rpc_status.from_call(exc), None
        for detail in status.details if status is not None else []:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                reason = info.reason
        restored = error_from_rpc(exc, "corpus")  # what a visearch client makes of it: the same reason
        assert restored.reason == reason or reason is None, (restored.reason, reason)
        return exc.code().name, reason, exc.details()


def live_outcomes(live, image: common_pb2.Image) -> dict[str, tuple[str, str | None, str]]:
    """Each method of GRPC_METHODS called with ``image`` on its server process."""
    procs, outcomes = live["procs"], {}
    for method, (server, call) in GRPC_METHODS.items():
        with grpc.insecure_channel(procs[server].address) as channel:
            outcomes[method] = rpc_outcome(lambda: call(channel, image))  # noqa: B023 (called at once)
    return outcomes


def check_serving(live) -> None:
    """Every process still runs and reports SERVING."""
    for name, proc in live["procs"].items():
        assert proc.process.poll() is None, f"{name} exited: {proc.log_tail()}"
        with grpc.insecure_channel(proc.address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING, name


@models
@milvus_lite
@pytest.mark.kafka
def test_corpus_over_real_grpc_servers_gets_exact_status_and_reason(live, images, corpus_photos):
    """Every image of the corpus, sent to each real server (EmbedImage, Detect, Read, Classify, Search,
    SimilarTo): a bad one fails with its exact status code and, in the status's ErrorInfo, its exact reason;
    an ok one is answered. Afterwards every server still answers a valid photo."""
    wrong, seen = [], {}
    for case in IMAGE_CASES:
        expected = (case.status, None if case.ok else case.reason)
        for method, (status, reason, details) in live_outcomes(live, images[case.kind]).items():
            seen.setdefault(case.kind, set()).add(f"{status} {reason or ''}".strip())
            if (status, reason) != expected:
                wrong.append(f"{case.kind} {method}: {status} {reason} {details[:160]!r}, expected {expected}")
    print(f"\n{len(IMAGE_CASES)} images x {len(GRPC_METHODS)} methods over gRPC:")
    print("\n".join(f"  {kind}: {' | '.join(sorted(outcomes))}" for kind, outcomes in seen.items()))
    assert not wrong, f"{len(wrong)} wrong outcomes:\n" + "\n".join(wrong)

    valid = common_pb2.Image(content=corpus_photos.cat_jpeg)
    assert all(o[0] == "OK" for o in live_outcomes(live, valid).values()), live_outcomes(live, valid)
    check_serving(live)


def live_lag(settings: KafkaSettings) -> int:
    """Messages not yet committed by the chain's stages, over all of them."""
    topics = stage_topics(LIVE_STAGES, settings.topic_prefix)
    return sum(sum(group_lag(settings, t.input, f"visearch-{stage}").values()) for stage, t in topics.items())


def live_dead_letters(settings: KafkaSettings) -> dict[str, tuple[str, str, str]]:
    """Message key -> (reason, stage, source topic) of every dead letter of the chain."""
    letters = {}
    for topics in stage_topics(LIVE_STAGES, settings.topic_prefix).values():
        for letter in read_dead_letters(settings, dlq_topic(topics.input), limit=500):
            assert letter.key not in letters, f"{letter.key} dead-lettered twice"
            letters[letter.key] = (letter.reason, letter.stage, letter.source_topic)
    return letters


def topic_keys(settings: KafkaSettings, topic: str) -> list[str]:
    """The keys of every message on ``topic`` (a stage's output: what the next stage received)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.client_options(), enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends, keys = consumer.end_offsets(tps), []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            keys += [(r.key or b"").decode() for rs in consumer.poll(timeout_ms=5000).values() for r in rs]
        return keys
    finally:
        consumer.close(autocommit=False)


@models
@milvus_lite
@pytest.mark.kafka
def test_corpus_over_real_kafka_lands_in_the_dlq_with_its_reason(live, images, corpus_photos):
    """Every image of the corpus (as an upsert) and every event case, published to the images topic of a real
    broker: each bad one lands in the DLQ topic of the stage that must refuse it, once, with its reason;
    each good one reaches the indexer, which commits it; the one the publisher must refuse
    (``message_too_large``) is refused by the Kafka client. A valid event published afterwards goes through
    the whole chain: the workers kept going."""
    settings = live["kafka"]
    topic = images_topic(settings)
    topics = stage_topics(LIVE_STAGES, settings.topic_prefix)
    where = {"decode": LIVE_STAGES[0], "image": FIRST_IMAGE_STAGE, "indexer": "indexer"}
    expected, good = {}, []
    transport = KafkaTransport(settings, "corpus-publisher")
    try:
        for case in IMAGE_CASES:
            event = events_pb2.ImageEvent(
                image_id=f"img-{case.kind}",
                kind=events_pb2.ImageEvent.KIND_UPSERT,
                image=images[case.kind],
                product=events_pb2.Product(title=case.description),
            )
            transport.produce(topic, *encode_event(event))
            if case.ok:
                good.append(event.image_id)
            else:
                expected[event.image_id] = (case.reason, FIRST_IMAGE_STAGE)
        for case in EVENT_CASES:
            raw = case.make(corpus_photos)
            if case.stage == "publish":  # too big for the topic: the producer refuses it before sending
                with pytest.raises(InvalidEventError) as info:
                    transport.produce(topic, case.kind.encode(), raw.value, raw.headers)
                assert info.value.reason == case.reason
                continue
            transport.produce(topic, case.kind.encode(), raw.value, raw.headers)
            if case.ok:
                good.append(case.kind)
            else:
                expected[case.kind] = (case.reason, where[case.stage])
        transport.flush()
    finally:
        transport.close()

    wait_until(lambda: live_lag(settings) == 0, WAIT_S, 1.0, "the chain through the corpus")
    letters = live_dead_letters(settings)
    got = {key: (reason, stage) for key, (reason, stage, _) in letters.items()}
    missing = {k: v for k, v in expected.items() if got.get(k) != v}
    extra = {k: v for k, v in got.items() if k not in expected}
    assert not missing and not extra, f"expected but not (so) dead-lettered: {missing}\nunexpected: {extra}"
    for key, (_, stage, source) in letters.items():
        assert source == topics[stage].input, (key, source)
    print(f"\n{len(letters)} dead letters over Kafka (key: reason @ stage):")
    print("\n".join(f"  {key}: {reason} @ {stage}" for key, (reason, stage, _) in sorted(letters.items())))
    reached_indexer = set(topic_keys(settings, topics["indexer"].input))
    assert set(good) <= reached_indexer, f"good inputs that never reached the indexer: {set(good) - reached_indexer}"
    assert "attribute_update_not_indexed" in reached_indexer  # refused by the indexer itself, not before

    # The workers kept going: a valid event after the corpus goes all the way through, with no dead letter.
    after = upsert(corpus_photos, "after-the-corpus", tenant=TENANT)
    start, ends_before = time.perf_counter(), len(letters)
    publish_one = KafkaTransport(settings, "corpus-publisher")
    try:
        publish_one.produce(topic, *encode_event(after))
        publish_one.flush()
    finally:
        publish_one.close()
    wait_until(  # first on the indexer's input, then committed by the indexer (after its Milvus write)
        lambda: "after-the-corpus" in topic_keys(settings, topics["indexer"].input) and live_lag(settings) == 0,
        WAIT_S,
        0.5,
        "the event after the corpus through the chain",
    )
    assert len(live_dead_letters(settings)) == ends_before
    print(f"\nvalid event after the corpus through the chain in {time.perf_counter() - start:.1f} s")
    check_serving(live)


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
