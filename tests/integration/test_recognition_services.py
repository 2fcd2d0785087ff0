"""Every recognition service as its own process: the five-stage chain over a real Kafka broker into
Milvus standalone, and each service's synchronous gRPC API, the services calling each other.

detection -> embedding -> ocr -> classification -> indexer consume this module's topics; the
classification server asks the detection and OCR servers for objects and text; the ranking server
asks embedding, detection and classification.
"""

from __future__ import annotations

import io
import uuid

import grpc
import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.integration.conftest import jpeg_bytes
from tests.integration.stack import KAFKA_BOOTSTRAP, MILVUS_URI, ScriptManaged, ServiceProcess, wait_until
from visearch.embedded import item_to_event
from visearch.shared.config import KafkaSettings, StoreSettings
from visearch.shared.dlq import read_dead_letters
from visearch.shared.kafka import KafkaTransport, create_topics, images_topic
from visearch.shared.pipeline import encode_event
from visearch.shared.store import MilvusStore
from visearch.v1 import (
    classification_pb2,
    classification_pb2_grpc,
    common_pb2,
    detection_pb2,
    detection_pb2_grpc,
    events_pb2,
    ocr_pb2,
    ocr_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)

pytestmark = [pytest.mark.kafka, pytest.mark.milvus, pytest.mark.models, pytest.mark.slow]

STAGES = ["detection", "embedding", "ocr", "classification", "indexer"]
PREFIX = f"r{uuid.uuid4().hex[:8]}"
TENANT = "recog"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


@pytest.fixture(scope="module")
def stack(built_models, tmp_path_factory):
    """Kafka + Milvus standalone (project scripts), this module's topics, and all six services."""
    kafka, milvus = ScriptManaged("kafka"), ScriptManaged("milvus")
    kafka.up()
    milvus.up()
    settings = KafkaSettings(bootstrap=KAFKA_BOOTSTRAP, topic_prefix=PREFIX, partitions=2, poll_timeout_s=0.5)
    assert set(create_topics(settings, STAGES).values()) == {"created"}
    store = MilvusStore(StoreSettings(uri=MILVUS_URI, collection_prefix=PREFIX, search_consistency="Strong"))
    env = {
        "VISEARCH_KAFKA_BOOTSTRAP": KAFKA_BOOTSTRAP,
        "VISEARCH_KAFKA_TOPIC_PREFIX": PREFIX,
        "VISEARCH_KAFKA_POLL_TIMEOUT_S": "0.5",
        "VISEARCH_KAFKA_MAX_POLL_RECORDS": "8",
        "VISEARCH_MILVUS_URI": MILVUS_URI,
        "VISEARCH_MILVUS_COLLECTION_PREFIX": PREFIX,
        "VISEARCH_MILVUS_SEARCH_CONSISTENCY": "Strong",
        "VISEARCH_TENANT": TENANT,
        "VISEARCH_PIPELINE_STAGES": ",".join(STAGES),
        "VISEARCH_LOG_LEVEL": "info",
        # the photo events carry paths on this machine: file URIs are off by default, this stack opts in
        "VISEARCH_IMAGE_ALLOW_FILE_URIS": "true",
    }
    logs = tmp_path_factory.mktemp("recognition-logs")
    procs = {name: ServiceProcess(name, env, logs) for name in ("detection", "embedding", "ocr", "indexer")}
    procs["classification"] = ServiceProcess(
        "classification",
        {**env, "VISEARCH_DETECTION_ADDR": procs["detection"].address, "VISEARCH_OCR_ADDR": procs["ocr"].address},
        logs,
    )
    procs["ranking"] = ServiceProcess(
        "ranking",
        {
            **env,
            "VISEARCH_PIPELINE_STAGES": "indexer",
            "VISEARCH_EMBEDDING_ADDR": procs["embedding"].address,
            "VISEARCH_DETECTION_ADDR": procs["detection"].address,
            "VISEARCH_CLASSIFICATION_ADDR": procs["classification"].address,
        },
        logs,
    )
    try:
        for proc in procs.values():
            proc.start(wait=False)
        for proc in procs.values():
            proc.wait_serving(timeout_s=300)
        yield {"kafka": settings, "store": store, "procs": procs}
    finally:
        codes = {name: proc.stop() for name, proc in procs.items()}
        store.close()
        milvus.down()
        kafka.down()
    assert set(codes.values()) == {0}, {n: procs[n].log_tail() for n, c in codes.items() if c != 0}


def publish(settings: KafkaSettings, events) -> None:
    transport = KafkaTransport(settings, "test-publisher")
    try:
        for event in events:
            transport.produce(images_topic(settings), *encode_event(event))
        transport.flush()
    finally:
        transport.close()


def text_photo(photos) -> bytes:
    img = Image.open(io.BytesIO(next(p for p in photos if p.image_id == "photo-coffee").read_bytes())).convert("RGB")
    draw = ImageDraw.Draw(img)
    draw.rectangle((20, 20, 430, 80), fill=(255, 255, 255))
    draw.text((30, 28), "ESPRESSO 2.50 EUR", font=ImageFont.truetype(FONT, 36), fill=(10, 10, 10))
    return jpeg_bytes(img, 92)


def test_chain_indexes_recognition_results_and_dead_letters_bad_images(stack, photos):
    """Photos through the five stages over Kafka: rows with objects, text, taxonomy, moderation,
    regions; a corrupt image is dead-lettered by the first stage with its reason, the rest go on."""
    store, settings = stack["store"], stack["kafka"]
    events = [item_to_event(p, TENANT) for p in photos]
    sign = events_pb2.ImageEvent(
        image_id="sign",
        kind=events_pb2.ImageEvent.KIND_UPSERT,
        tenant=TENANT,
        image=common_pb2.Image(content=text_photo(photos)),
    )
    dog_jpeg = next(p for p in photos if p.image_id == "photo-dog").read_bytes()
    bad = events_pb2.ImageEvent(
        image_id="broken",
        kind=events_pb2.ImageEvent.KIND_UPSERT,
        tenant=TENANT,
        image=common_pb2.Image(content=dog_jpeg[: len(dog_jpeg) // 2]),
    )
    publish(settings, [*events, sign, bad])
    wait_until(lambda: store.count(tenant=TENANT) >= len(events) + 1, 600, what="photos indexed through five stages")
    assert store.count(tenant=TENANT) == len(events) + 1
    dog = store.get(TENANT, "photo-dog")
    assert {"dog", "bicycle"} <= set(dog["tags"].split(";")) and dog["taxonomy"] and dog["safe"] is True
    assert {"dog", "bicycle"} <= {r["label"] for r in store.regions(TENANT, "photo-dog")}
    assert "ESPRESSO" in store.get(TENANT, "sign")["ocr_text"].upper()
    letters = read_dead_letters(settings, f"{images_topic(settings)}.dlq", limit=10)
    assert [(letter.key, letter.reason, letter.stage) for letter in letters] == [
        ("broken", "truncated_image", "detection")
    ], letters


def test_sync_apis_of_each_service(stack, photos):
    """Detect, Read and Classify over gRPC; Classify gets its objects from the detection server."""
    procs = stack["procs"]
    dog = common_pb2.Image(content=next(p for p in photos if p.image_id == "photo-dog").read_bytes())
    with grpc.insecure_channel(procs["detection"].address) as ch:
        found = detection_pb2_grpc.DetectionServiceStub(ch).Detect(
            detection_pb2.DetectRequest(images=[dog]), timeout=60
        )
        assert {"dog", "bicycle"} <= {d.label for d in found.results[0].detections}
    with grpc.insecure_channel(procs["ocr"].address) as ch:
        read = ocr_pb2_grpc.OcrServiceStub(ch).Read(
            ocr_pb2.ReadRequest(images=[common_pb2.Image(content=text_photo(photos))]), timeout=60
        )
        assert "ESPRESSO" in read.results[0].text.upper()
        with pytest.raises(grpc.RpcError) as info:
            ocr_pb2_grpc.OcrServiceStub(ch).Read(
                ocr_pb2.ReadRequest(images=[common_pb2.Image(content=b"nope")]), timeout=30
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with grpc.insecure_channel(procs["classification"].address) as ch:
        result = (
            classification_pb2_grpc.ClassificationServiceStub(ch)
            .Classify(classification_pb2.ClassifyRequest(images=[dog]), timeout=120)
            .results[0]
        )
        objects = {a.value for a in result.attributes if a.name == "object"}
        assert {"dog", "bicycle"} <= objects and result.moderation.safe and result.taxonomy


def test_ranking_uses_the_recognition_services(stack, photos):
    """The ranking server searches by the query's objects (detection server) and tags a query image
    (classification server)."""
    dog = common_pb2.Image(content=next(p for p in photos if p.image_id == "photo-dog").read_bytes())
    with grpc.insecure_channel(stack["procs"]["ranking"].address) as ch:
        stub = search_pb2_grpc.SearchServiceStub(ch)
        request = search_pb2.SearchRequest(image=dog, region_mode=search_pb2.REGION_MODE_QUERY_OBJECTS, top_k=3)
        top = stub.Search(request, timeout=120).hits[0]
        assert top.image_id == "photo-dog" and top.region.label and top.region.query_label
        tags = stub.Tag(search_pb2.TagRequest(image=dog, neighbours=5), timeout=120)
        assert tags.neighbours_used == 5 and {a.name for a in tags.model_tags} >= {"object", "category"}
