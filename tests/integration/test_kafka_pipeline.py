"""The asynchronous pipeline over a real Apache Kafka broker and a real Milvus standalone server,
both started by the project's scripts, with embedding and indexer running as separate processes.

Each test writes to its own tenant; the module uses its own topic and collection prefix, so runs
never see each other's data. Figures (events/s, recovery times) are printed (`-s` shows them).
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from tests.integration.stack import KAFKA_BOOTSTRAP, MILVUS_URI, ScriptManaged, ServiceProcess, script, wait_until
from visearch.embedded import item_to_event
from visearch.offline.datasets import fashion_mnist
from visearch.services.ranking.text_index import TextIndex
from visearch.shared.config import KafkaSettings, StoreSettings
from visearch.shared.dlq import read_dead_letters
from visearch.shared.kafka import KafkaTransport, create_topics, group_lag, images_topic
from visearch.shared.pipeline import encode_event
from visearch.shared.store import MilvusStore
from visearch.shared.transport import HEADER_SCHEMA, HEADER_TRACE_ID, dlq_topic, stage_topics
from visearch.v1 import common_pb2, events_pb2

pytestmark = [pytest.mark.kafka, pytest.mark.milvus, pytest.mark.models, pytest.mark.slow]

STAGES = ["embedding", "indexer"]
PREFIX = f"t{uuid.uuid4().hex[:8]}"
Kind = events_pb2.ImageEvent


@pytest.fixture(scope="module")
def infra():
    """Kafka and Milvus standalone via deploy/*/*.sh (stopped afterwards if this module started them)."""
    kafka, milvus = ScriptManaged("kafka"), ScriptManaged("milvus")
    kafka.up()
    milvus.up()
    yield
    milvus.down()
    kafka.down()


@pytest.fixture(scope="module")
def kafka_settings(infra) -> KafkaSettings:
    settings = KafkaSettings(
        bootstrap=KAFKA_BOOTSTRAP,
        topic_prefix=PREFIX,
        partitions=3,
        poll_timeout_s=0.5,
        retry_initial_s=0.5,
        retry_max_s=5.0,
    )
    created = create_topics(settings, STAGES)
    assert set(created.values()) == {"created"}
    return settings


@pytest.fixture(scope="module")
def store(infra):
    store = MilvusStore(StoreSettings(uri=MILVUS_URI, collection_prefix=PREFIX, search_consistency="Strong"))
    yield store
    store.close()


@pytest.fixture(scope="module")
def services(built_models, kafka_settings, store, tmp_path_factory):
    """embedding and indexer as processes, consuming this module's topics."""
    env = {
        "VISEARCH_KAFKA_BOOTSTRAP": KAFKA_BOOTSTRAP,
        "VISEARCH_KAFKA_TOPIC_PREFIX": PREFIX,
        "VISEARCH_KAFKA_PARTITIONS": "3",
        "VISEARCH_KAFKA_POLL_TIMEOUT_S": "0.5",
        "VISEARCH_KAFKA_RETRY_MAX_S": "5",
        "VISEARCH_MILVUS_URI": MILVUS_URI,
        "VISEARCH_MILVUS_COLLECTION_PREFIX": PREFIX,
        "VISEARCH_PIPELINE_STAGES": ",".join(STAGES),
        "VISEARCH_LOG_LEVEL": "info",
    }
    logs = tmp_path_factory.mktemp("service-logs")
    procs = {name: ServiceProcess(name, env, logs) for name in ("embedding", "indexer")}
    try:
        for proc in procs.values():
            proc.start()
        yield procs
    finally:
        codes = {name: proc.stop() for name, proc in procs.items()}
    assert codes == {"embedding": 0, "indexer": 0}, {n: p.log_tail() for n, p in procs.items()}


def publish(settings: KafkaSettings, events) -> int:
    transport = KafkaTransport(settings, "test-publisher")
    count = 0
    try:
        for event in events:
            transport.produce(images_topic(settings), *encode_event(event))
            count += 1
        transport.flush()
    finally:
        transport.close()
    return count


def fashion_events(tenant: str, n: int, offset: int = 0):
    return [item_to_event(item, tenant) for item in fashion_mnist("train", limit=n, offset=offset)]


def topic_size(settings: KafkaSettings, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.client_options())
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def total_lag(settings: KafkaSettings) -> int:
    topics = stage_topics(STAGES, settings.topic_prefix)
    return sum(sum(group_lag(settings, t.input, f"visearch-{stage}").values()) for stage, t in topics.items())


def test_500_events_become_searchable_and_lag_returns_to_zero(services, kafka_settings, store):
    """500 published events: all indexed, every stage's output present, lag back to zero."""
    tenant = "bulk"
    events = fashion_events(tenant, 500)
    start = time.perf_counter()
    publish(kafka_settings, events)
    wait_until(lambda: store.count(tenant=tenant) >= 500, 600, what="500 indexed")
    elapsed = time.perf_counter() - start
    print(f"500 events end to end in {elapsed:.1f} s = {500 / elapsed:.1f} events/s")
    assert store.count(tenant=tenant) == 500
    embedded_topic = stage_topics(STAGES, PREFIX)["embedding"].output
    assert topic_size(kafka_settings, embedded_topic) >= 500
    wait_until(lambda: total_lag(kafka_settings) == 0, 60, what="lag 0")
    sample = events[7]
    row = store.get(tenant, sample.image_id)
    assert row["category"] == sample.product.category and row["title"] == sample.product.title
    assert len(row["vector"]) == 1280
    hits = store.search("image", np.asarray(row["vector"]), tenant=tenant, top_k=1)
    assert hits[0].image_id == sample.image_id
    # Milvus 2.3 has no BM25: the store keeps the per_space layout and keyword search falls back to the ranking
    # process's own index, built from the store's rows.
    assert store.layout == "per_space" and not store.full_text
    keyword = TextIndex(store.text_rows, refresh_s=3600).search(tenant, sample.product.title, 500)
    assert sample.image_id in [image_id for image_id, _ in keyword]  # titles "<class> #<n>": every item of its class


def test_delete_attribute_update_and_redelivery(services, kafka_settings, store):
    """A redelivered upsert leaves one row; attribute updates change fields only; delete removes it."""
    tenant = "lifecycle"
    event = fashion_events(tenant, 1, offset=42)[0]
    publish(kafka_settings, [event, event])  # the same event twice: a redelivery
    wait_until(lambda: store.get(tenant, event.image_id), 120, what="indexed")
    # both copies consumed by every stage (the indexer included), not a sleep that may end before the second
    wait_until(lambda: total_lag(kafka_settings) == 0, 120, what="the duplicate consumed")
    assert store.count(tenant=tenant) == 1
    before = store.get(tenant, event.image_id)

    update = events_pb2.ImageEvent(
        image_id=event.image_id,
        kind=Kind.KIND_ATTRIBUTE_UPDATE,
        tenant=tenant,
        product=events_pb2.Product(in_stock=False, price=99.5),
    )
    publish(kafka_settings, [update])
    after = wait_until(
        lambda: (r := store.get(tenant, event.image_id)) and r["price"] == 99.5 and r, 120, what="updated"
    )
    assert after["in_stock"] is False and after["title"] == before["title"] and after["category"] == before["category"]
    assert np.allclose(after["vector"], before["vector"])

    publish(kafka_settings, [events_pb2.ImageEvent(image_id=event.image_id, kind=Kind.KIND_DELETE, tenant=tenant)])
    wait_until(lambda: store.get(tenant, event.image_id) is None, 120, what="deleted")
    assert store.get(tenant, event.image_id, "joint") is None
    assert store.count(tenant=tenant) == 0


def test_poison_events_go_to_dlq_with_reasons(services, kafka_settings, store):
    """Bad image bytes, bad protobuf and missing fields land in the DLQ; good events around them pass."""
    tenant = "poison"
    good = fashion_events(tenant, 4, offset=100)
    bad_image = events_pb2.ImageEvent(
        image_id="bad-image",
        kind=Kind.KIND_UPSERT,
        tenant=tenant,
        image=common_pb2.Image(content=b"\xff\xd8\xff\xe0 truncated jpeg"),
    )
    no_id = events_pb2.ImageEvent(kind=Kind.KIND_UPSERT, tenant=tenant, image=common_pb2.Image(content=b"x"))
    no_kind = events_pb2.ImageEvent(image_id="no-kind", tenant=tenant)
    transport = KafkaTransport(kafka_settings, "test-poison")
    topic = images_topic(kafka_settings)
    try:
        for event in (good[0], bad_image, good[1], no_id, no_kind, good[2]):
            transport.produce(topic, *encode_event(event))
        transport.produce(
            topic,
            b"garbage",
            b"\x08\x96\x01\xff\xff not a protobuf",
            {HEADER_SCHEMA: "visearch.v1.ImageEvent", HEADER_TRACE_ID: "t-garbage"},
        )
        transport.produce(topic, *encode_event(good[3]))
        transport.flush()
    finally:
        transport.close()
    wait_until(lambda: store.count(tenant=tenant) == 4, 180, what="good events indexed")
    letters = wait_until(
        lambda: len(ls := read_dead_letters(kafka_settings, dlq_topic(topic), 50)) >= 4 and ls,
        60,
        what="4 dead letters",
    )
    by_key = {letter.key: letter for letter in letters}
    assert by_key["bad-image"].reason in ("truncated_image", "undecodable_image")
    assert by_key["bad-image"].stage == "embedding" and by_key["bad-image"].exception == "InvalidImageError"
    assert by_key["garbage"].reason == "malformed_payload"
    assert by_key[""].reason == "missing_image_id"
    assert by_key["no-kind"].reason == "missing_kind"
    assert all(letter.source_topic == topic and letter.source_offset.isdigit() for letter in letters)
    assert all(p.process.poll() is None for p in services.values())


def test_kill_9_mid_stream_loses_nothing_and_duplicates_nothing(services, kafka_settings, store):
    """SIGKILL the embedding process during 1,000 events, restart it: every image indexed exactly once."""
    tenant = "crash"
    events = fashion_events(tenant, 1000, offset=1000)
    publish(kafka_settings, events)
    wait_until(lambda: store.count(tenant=tenant) >= 150, 300, what="stream under way")
    services["embedding"].kill9()
    killed_at = store.count(tenant=tenant)
    restart = time.perf_counter()
    services["embedding"].start()
    wait_until(lambda: store.count(tenant=tenant) >= 1000, 600, what="1000 indexed after restart")
    wait_until(lambda: total_lag(kafka_settings) == 0, 120, what="lag 0 after restart")
    recovery = time.perf_counter() - restart
    print(f"kill -9 at {killed_at}/1000 indexed; lag back to 0 {recovery:.1f} s after restart")
    assert store.count(tenant=tenant) == 1000
    # Content check on a sample: each stored row holds this image's own fields and embedding.
    from visearch.shared.encoders import Embedder
    from visearch.shared.images import decode_image

    embedder = Embedder.from_cache()
    for event in events[::97]:
        row = store.get(tenant, event.image_id)
        assert row["title"] == event.product.title and row["category"] == event.product.category
        expected = embedder.embed_images([decode_image(event.image.content)]).image[0]
        assert float(np.dot(expected, np.asarray(row["vector"], dtype=np.float32))) > 0.999


def test_broker_restart_mid_stream(services, kafka_settings, store):
    """Stop and restart the broker while events flow: workers back off, resume, and lose nothing."""
    tenant = "broker-restart"
    publish(kafka_settings, fashion_events(tenant, 300, offset=3000))
    wait_until(lambda: store.count(tenant=tenant) >= 30, 300, what="stream under way")
    down = script("kafka", "down")
    assert down.returncode == 0, down.stderr
    time.sleep(5)
    start = time.perf_counter()
    up = script("kafka", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    wait_until(lambda: store.count(tenant=tenant) >= 300, 600, what="300 indexed after broker restart")
    print(f"broker restarted; all 300 indexed {time.perf_counter() - start:.1f} s after it came back")
    assert store.count(tenant=tenant) == 300
    assert all(p.process.poll() is None for p in services.values())


def test_dlq_replay_after_the_cause_is_fixed(services, kafka_settings, store):
    """An attribute update for a not-yet-indexed image is dead-lettered; once the image exists,
    `dlq replay --reason not_indexed` applies it."""
    from visearch.shared.dlq import replay_dead_letters

    tenant = "replay"
    event = fashion_events(tenant, 1, offset=5000)[0]
    update = events_pb2.ImageEvent(
        image_id=event.image_id,
        kind=Kind.KIND_ATTRIBUTE_UPDATE,
        tenant=tenant,
        product=events_pb2.Product(in_stock=False, price=1.25),
    )
    publish(kafka_settings, [update])
    indexer_dlq = dlq_topic(stage_topics(STAGES, PREFIX)["indexer"].input)
    wait_until(
        lambda: any(letter.key == event.image_id for letter in read_dead_letters(kafka_settings, indexer_dlq, 100)),
        120,
        what="dead letter not_indexed",
    )
    publish(kafka_settings, [event])
    wait_until(lambda: store.get(tenant, event.image_id), 120, what="indexed")
    replayed, _ = replay_dead_letters(kafka_settings, indexer_dlq, reasons=["not_indexed"])
    assert replayed >= 1
    row = wait_until(
        lambda: (r := store.get(tenant, event.image_id)) and r["price"] == 1.25 and r, 120, what="replayed update"
    )
    assert row["in_stock"] is False
