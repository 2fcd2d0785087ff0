"""Publish-to-searchable freshness (visearch_ingest_freshness_seconds): the first stage stamps the record's
publication time into the document, and the indexer observes, once a write returned, the time since the event's
``event_time`` (when the publisher set it) or that stamp, by event kind. The real chain over Kafka and Milvus:
tests/integration/test_freshness_lag.py."""

from __future__ import annotations

import time

import numpy as np
import pytest
from prometheus_client import REGISTRY

from visearch.services.indexer.stage import IndexerStage, published_s
from visearch.shared.errors import DependencyUnavailableError
from visearch.shared.pipeline import SCHEMA_DOCUMENT, StageWorker, decode_message, encode_event
from visearch.shared.transport import HEADER_SCHEMA, InProcessTransport, Message
from visearch.v1 import common_pb2, events_pb2

Kind = events_pb2.ImageEvent
METRIC = "visearch_ingest_freshness_seconds"


class FakeStore:
    """What IndexerStage calls; ``fail`` makes writes raise (Milvus down); update_attributes finds ``indexed``."""

    def __init__(self) -> None:
        self.upserted: list[str] = []
        self.indexed: set[str] = set()
        self.fail = False

    def upsert(self, rows) -> None:
        if self.fail:
            raise DependencyUnavailableError("milvus down")
        for row in rows:
            self.upserted.append(row.image_id)
            self.indexed.add(row.image_id)

    def delete(self, tenant: str, ids: list[str]) -> None:
        self.indexed -= set(ids)

    def update_attributes(self, tenant: str, image_id: str, changes) -> bool:
        return image_id in self.indexed


def observed(kind: str) -> tuple[float, float]:
    """(count, sum) of the histogram for ``kind``."""
    count = REGISTRY.get_sample_value(f"{METRIC}_count", {"kind": kind}) or 0.0
    total = REGISTRY.get_sample_value(f"{METRIC}_sum", {"kind": kind}) or 0.0
    return count, total


def document(image_id: str, kind=Kind.KIND_UPSERT, published: float | None = None, event_time: float | None = None):
    doc = events_pb2.ImageDocument(event=events_pb2.ImageEvent(image_id=image_id, kind=kind, tenant="t"))
    if kind == Kind.KIND_UPSERT:
        doc.embeddings.image.values.extend(np.full(4, 0.5, dtype=np.float32).tolist())
        doc.embeddings.joint.values.extend(np.full(4, 0.5, dtype=np.float32).tolist())
    if published is not None:
        doc.published_at.FromNanoseconds(int(published * 1e9))
    if event_time is not None:
        doc.event.event_time.FromNanoseconds(int(event_time * 1e9))
    return doc


def test_first_stage_stamps_the_record_timestamp_and_later_stages_keep_it():
    key, value, headers = encode_event(events_pb2.ImageEvent(image_id="a", kind=Kind.KIND_UPSERT))
    doc = decode_message(Message("images", key, value, headers, timestamp_ms=1_700_000_000_123))
    assert doc.published_at.ToMilliseconds() == 1_700_000_000_123
    # the next stage reads the document from a record produced later: the publication time stays
    later = decode_message(
        Message(
            "detected", key, doc.SerializeToString(), {HEADER_SCHEMA: SCHEMA_DOCUMENT}, timestamp_ms=1_800_000_000_000
        )
    )
    assert later.published_at.ToMilliseconds() == 1_700_000_000_123
    # no timestamp known: nothing stamped
    assert not decode_message(Message("images", key, value, headers)).HasField("published_at")


def test_in_process_transport_timestamps_records():
    transport = InProcessTransport()
    before = time.time() * 1000
    transport.produce("t", b"k", b"v", {})
    (message,) = transport.poll("t", "g", 1)
    assert before - 1 <= message.timestamp_ms <= time.time() * 1000 + 1


def test_publication_time_is_event_time_when_set_else_the_record_stamp():
    assert published_s(document("a", published=100.0, event_time=90.0)) == pytest.approx(90.0)
    assert published_s(document("a", published=100.0)) == pytest.approx(100.0)
    assert published_s(document("a")) is None


def test_indexer_observes_freshness_once_the_upsert_returned_by_kind():
    store = FakeStore()
    stage = IndexerStage(store)  # type: ignore[arg-type]
    now = time.time()
    count, total = observed("upsert")
    stage.process([document("a", published=now - 30), document("b", published=now - 10, event_time=now - 50)])
    new_count, new_total = observed("upsert")
    assert store.upserted == ["a", "b"]
    assert new_count - count == 2
    assert new_total - total == pytest.approx(80, abs=2)  # 30 s + 50 s (event_time wins over the record stamp)

    deletes, updates = observed("delete")[0], observed("attribute_update")[0]
    stage.process(
        [
            document("a", Kind.KIND_ATTRIBUTE_UPDATE, published=now - 5),
            document("b", Kind.KIND_DELETE, published=now - 5),
            document("missing", Kind.KIND_ATTRIBUTE_UPDATE, published=now - 5),  # not indexed: failed, not observed
        ]
    )
    assert observed("attribute_update")[0] - updates == 1
    assert observed("delete")[0] - deletes == 1


def test_nothing_is_observed_when_the_write_fails_or_the_clock_is_ahead():
    store = FakeStore()
    stage = IndexerStage(store)  # type: ignore[arg-type]
    count, total = observed("upsert")
    store.fail = True
    with pytest.raises(DependencyUnavailableError):
        stage.process([document("a", published=time.time() - 30)])
    assert observed("upsert") == (count, total)
    store.fail = False
    stage.process([document("a", event_time=time.time() + 3600)])  # an upstream clock an hour ahead
    assert observed("upsert") == (count + 1, total)  # counted as 0 s


def test_every_kind_series_exists_from_the_start():
    """Series exist at 0 before the first event, so rate() over the first scrapes sees the first events."""
    IndexerStage(FakeStore())  # type: ignore[arg-type]
    for kind in ("upsert", "delete", "attribute_update"):
        assert REGISTRY.get_sample_value(f"{METRIC}_count", {"kind": kind}) is not None


def test_in_process_chain_observes_publish_to_searchable():
    """An event published to the in-process transport and indexed by the worker: one observation, of the
    time since it was produced."""
    transport, store = InProcessTransport(), FakeStore()
    event = events_pb2.ImageEvent(image_id="p", kind=Kind.KIND_UPSERT, tenant="t")
    event.image.CopyFrom(common_pb2.Image(uri="https://example.com/p.jpg"))
    doc = document("p")
    doc.event.CopyFrom(event)
    transport.produce("in", b"p", doc.SerializeToString(), {HEADER_SCHEMA: SCHEMA_DOCUMENT})
    count, total = observed("upsert")
    time.sleep(0.2)
    assert StageWorker(IndexerStage(store), transport, "in", None).drain() == (1, 0)  # type: ignore[arg-type]
    new_count, new_total = observed("upsert")
    assert new_count - count == 1
    assert 0.2 <= new_total - total < 5
