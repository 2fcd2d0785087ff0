"""Unit tests for the in-process transport and the stage worker loop (visearch.shared.transport/pipeline)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from visearch.shared.errors import DependencyUnavailableError, InvalidEventError, InvalidImageError
from visearch.shared.pipeline import (
    SCHEMA_DOCUMENT,
    SCHEMA_EVENT,
    Stage,
    StageFailure,
    StageWorker,
    decode_message,
    encode_event,
)
from visearch.shared.transport import (
    HEADER_DLQ_ERROR,
    HEADER_DLQ_REASON,
    HEADER_DLQ_STAGE,
    HEADER_SCHEMA,
    HEADER_TRACE_ID,
    InProcessTransport,
    Message,
    dlq_topic,
)
from visearch.v1 import events_pb2

IN, OUT = "test.in", "test.out"
Kind = events_pb2.ImageEvent


class FakeStage(Stage):
    """Marks each document (info.format = "seen"); ids starting with "bad" fail; ``raise_error`` fails the batch."""

    name = "fake"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.raise_error: Exception | None = None

    def process(self, documents):
        self.batches.append([d.event.image_id for d in documents])
        if self.raise_error is not None:
            raise self.raise_error
        results = []
        for doc in documents:
            if doc.event.image_id.startswith("bad"):
                results.append(self.fail(doc, InvalidImageError("cannot decode", reason="undecodable_image")))
                continue
            out = events_pb2.ImageDocument()
            out.CopyFrom(doc)
            out.info.format = "seen"
            results.append(out)
        return results


def event(image_id: str, kind=Kind.KIND_UPSERT, trace_id: str = "") -> events_pb2.ImageEvent:
    """An ImageEvent with inline content."""
    ev = events_pb2.ImageEvent(image_id=image_id, kind=kind, trace_id=trace_id, tenant="t1")
    ev.image.content = b"\x89PNG..."
    return ev


def publish(transport: InProcessTransport, *events: events_pb2.ImageEvent) -> None:
    """Produce events to the input topic the way producers do (encode_event)."""
    for ev in events:
        transport.produce(IN, *encode_event(ev))


def malformed_bytes() -> bytes:
    """Bytes that are not a protobuf message (first tag has the invalid wire type 7), then random noise."""
    return b"\x0f" + np.random.default_rng(1).bytes(40)


@pytest.fixture
def transport() -> InProcessTransport:
    return InProcessTransport()


# ------------------------------------------------------------------------------------------- transport


def test_produce_assigns_sequential_offsets_and_copies_headers(transport):
    """Offsets are 0, 1, 2... per topic, and later changes to the caller's headers dict do not leak in."""
    headers = {"h": "1"}
    transport.produce("a", b"k0", b"v0", headers)
    headers["h"] = "changed"
    transport.produce("a", b"k1", b"v1", headers)
    transport.produce("b", b"k", b"v", {})
    msgs = transport.messages("a")
    assert [(m.offset, m.key, m.value) for m in msgs] == [(0, b"k0", b"v0"), (1, b"k1", b"v1")]
    assert msgs[0].headers == {"h": "1"}
    assert transport.messages("b")[0].offset == 0
    assert transport.messages("never") == []


def test_poll_advances_position_and_respects_max_records(transport):
    """Polls return consecutive slices of at most max_records, then nothing."""
    for i in range(5):
        transport.produce(IN, b"k", str(i).encode(), {})
    assert [m.value for m in transport.poll(IN, "g", 2)] == [b"0", b"1"]
    assert [m.value for m in transport.poll(IN, "g", 2)] == [b"2", b"3"]
    assert [m.value for m in transport.poll(IN, "g", 10)] == [b"4"]
    assert transport.poll(IN, "g", 10) == []


def test_rewind_redelivers_uncommitted_but_not_committed(transport):
    """After commit + more polls, rewind_to_committed redelivers exactly the uncommitted messages."""
    for i in range(4):
        transport.produce(IN, b"k", str(i).encode(), {})
    transport.poll(IN, "g", 2)
    transport.commit(IN, "g")
    assert [m.value for m in transport.poll(IN, "g", 2)] == [b"2", b"3"]
    transport.rewind_to_committed(IN, "g")
    assert [m.value for m in transport.poll(IN, "g", 10)] == [b"2", b"3"]
    transport.commit(IN, "g")
    transport.rewind_to_committed(IN, "g")
    assert transport.poll(IN, "g", 10) == []


def test_rewind_without_any_commit_starts_from_zero(transport):
    """A group that never committed is redelivered everything after a rewind."""
    transport.produce(IN, b"k", b"0", {})
    transport.poll(IN, "g", 10)
    transport.rewind_to_committed(IN, "g")
    assert [m.value for m in transport.poll(IN, "g", 10)] == [b"0"]


def test_lag_counts_uncommitted_messages(transport):
    """lag = produced - committed; polling alone does not reduce it."""
    for _ in range(3):
        transport.produce(IN, b"k", b"v", {})
    assert transport.lag(IN, "g") == 3
    transport.poll(IN, "g", 2)
    assert transport.lag(IN, "g") == 3
    transport.commit(IN, "g")
    assert transport.lag(IN, "g") == 1
    transport.produce(IN, b"k", b"v", {})
    assert transport.lag(IN, "g") == 2


def test_consumer_groups_are_independent(transport):
    """Each group has its own position and commit."""
    transport.produce(IN, b"k", b"v", {})
    assert len(transport.poll(IN, "g1", 10)) == 1
    transport.commit(IN, "g1")
    assert len(transport.poll(IN, "g2", 10)) == 1
    assert transport.lag(IN, "g1") == 0 and transport.lag(IN, "g2") == 1


def test_dlq_topic_name():
    """The dead-letter topic of t is t.dlq."""
    assert dlq_topic("visearch.images.v1") == "visearch.images.v1.dlq"


# ------------------------------------------------------------------------------- encode/decode_message


def test_encode_event_assigns_trace_id_and_keys_by_image_id():
    """A missing trace id is generated (in the event and the header); key is the image id; schema header set."""
    ev = event("img-1")
    key, value, headers = encode_event(ev)
    assert key == b"img-1"
    assert ev.trace_id and len(ev.trace_id) == 32
    assert headers == {HEADER_SCHEMA: SCHEMA_EVENT, HEADER_TRACE_ID: ev.trace_id}
    assert events_pb2.ImageEvent.FromString(value).trace_id == ev.trace_id
    assert encode_event(event("img-2"))[2][HEADER_TRACE_ID] != ev.trace_id


def test_encode_event_keeps_existing_trace_id():
    """A trace id already set is kept."""
    _, value, headers = encode_event(event("img-1", trace_id="abc"))
    assert headers[HEADER_TRACE_ID] == "abc"
    assert events_pb2.ImageEvent.FromString(value).trace_id == "abc"


def test_decode_message_event_document_and_default_schema():
    """An ImageEvent is wrapped in a document; an ImageDocument is read as is; no schema header means ImageEvent."""
    ev = event("a", trace_id="t")
    doc = decode_message(Message(IN, b"a", ev.SerializeToString(), {HEADER_SCHEMA: SCHEMA_EVENT}))
    assert doc.event == ev
    assert decode_message(Message(IN, b"a", ev.SerializeToString(), {})).event == ev
    full = events_pb2.ImageDocument(event=ev)
    full.info.width = 7
    doc = decode_message(Message(IN, b"a", full.SerializeToString(), {HEADER_SCHEMA: SCHEMA_DOCUMENT}))
    assert doc == full


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (malformed_bytes(), {HEADER_SCHEMA: SCHEMA_EVENT}, "malformed_payload"),
        (event("").SerializeToString(), {HEADER_SCHEMA: SCHEMA_EVENT}, "missing_image_id"),
        (event("a", kind=Kind.KIND_UNSPECIFIED).SerializeToString(), {HEADER_SCHEMA: SCHEMA_EVENT}, "missing_kind"),
        (event("a").SerializeToString(), {HEADER_SCHEMA: "visearch.v2.Other"}, "unknown_schema"),
    ],
)
def test_decode_message_errors(value, headers, reason):
    """Unparseable, id-less, kind-less and unknown-schema messages raise InvalidEventError (permanent: DLQ) with their reason."""
    with pytest.raises(InvalidEventError) as info:
        decode_message(Message(IN, b"k", value, headers))
    assert info.value.reason == reason
    assert info.value.permanent and info.value.code == grpc.StatusCode.INVALID_ARGUMENT


# ---------------------------------------------------------------------------------------------- worker


def test_worker_moves_documents_to_output_with_schema_and_trace_headers(transport):
    """Processed documents reach the output topic as ImageDocuments with the input's key and trace id."""
    publish(transport, event("a", trace_id="trace-a"), event("b", trace_id="trace-b"))
    worker = StageWorker(FakeStage(), transport, IN, OUT)
    assert worker.run_once() == (2, 0)
    out = transport.messages(OUT)
    assert [m.key for m in out] == [b"a", b"b"]
    for msg, trace in zip(out, ("trace-a", "trace-b")):
        assert msg.headers[HEADER_SCHEMA] == "visearch.v1.ImageDocument"
        assert msg.headers[HEADER_TRACE_ID] == trace
        doc = events_pb2.ImageDocument.FromString(msg.value)
        assert doc.info.format == "seen" and doc.event.trace_id == trace
    assert transport.lag(IN, worker.group) == 0
    assert transport.messages(dlq_topic(IN)) == []


def test_worker_default_group_and_terminal_stage(transport):
    """The default group is visearch-<stage name>; a terminal stage (no output topic) produces nothing."""
    publish(transport, event("a"))
    worker = StageWorker(FakeStage(), transport, IN, None)
    assert worker.group == "visearch-fake"
    assert worker.run_once() == (1, 0)
    assert transport.lag(IN, "visearch-fake") == 0
    assert transport.messages(OUT) == []


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (malformed_bytes(), {HEADER_SCHEMA: SCHEMA_EVENT, HEADER_TRACE_ID: "t-bad"}, "malformed_payload"),
        (event("").SerializeToString(), {HEADER_SCHEMA: SCHEMA_EVENT, HEADER_TRACE_ID: "t-bad"}, "missing_image_id"),
        (
            event("x", kind=Kind.KIND_UNSPECIFIED).SerializeToString(),
            {HEADER_SCHEMA: SCHEMA_EVENT, HEADER_TRACE_ID: "t-bad"},
            "missing_kind",
        ),
        (event("x").SerializeToString(), {HEADER_SCHEMA: "text/plain", HEADER_TRACE_ID: "t-bad"}, "unknown_schema"),
    ],
)
def test_worker_dead_letters_undecodable_messages_and_keeps_going(transport, value, headers, reason):
    """A bad message goes to <input>.dlq with its reason (original key, value, headers kept); the rest goes through."""
    publish(transport, event("a"))
    transport.produce(IN, b"bad-key", value, headers)
    publish(transport, event("b"))
    stage = FakeStage()
    worker = StageWorker(stage, transport, IN, OUT)
    assert worker.run_once() == (2, 1)
    assert stage.batches == [["a", "b"]]
    assert [m.key for m in transport.messages(OUT)] == [b"a", b"b"]
    dlq = transport.messages(f"{IN}.dlq")
    assert len(dlq) == 1
    msg = dlq[0]
    assert msg.headers[HEADER_DLQ_REASON] == reason
    assert msg.headers[HEADER_DLQ_STAGE] == "fake"
    assert msg.headers[HEADER_DLQ_ERROR]
    assert msg.headers[HEADER_TRACE_ID] == "t-bad"
    assert (msg.key, msg.value) == (b"bad-key", value)
    assert transport.lag(IN, worker.group) == 0


def test_worker_dead_letters_stage_failures_and_continues(transport):
    """A StageFailure result goes to the DLQ with its reason; other documents in the batch reach the output."""
    publish(transport, event("a"), event("bad-1", trace_id="tb"), event("c"))
    worker = StageWorker(FakeStage(), transport, IN, OUT)
    assert worker.run_once() == (2, 1)
    assert [m.key for m in transport.messages(OUT)] == [b"a", b"c"]
    (dead,) = transport.messages(dlq_topic(IN))
    assert dead.key == b"bad-1"
    assert dead.headers[HEADER_DLQ_REASON] == "undecodable_image"
    assert dead.headers[HEADER_DLQ_ERROR] == "cannot decode"
    assert dead.headers[HEADER_TRACE_ID] == "tb"
    assert events_pb2.ImageEvent.FromString(dead.value).image_id == "bad-1"
    publish(transport, event("d"))
    assert worker.run_once() == (1, 0)
    assert [m.key for m in transport.messages(OUT)] == [b"a", b"c", b"d"]


def test_stage_fail_keeps_visearch_reason_and_maps_others_to_internal():
    """Stage.fail uses a VisearchError's reason, 'internal' for any other exception."""
    doc = events_pb2.ImageDocument(event=event("a"))
    failure = FakeStage().fail(doc, InvalidImageError("bad", reason="truncated_image"))
    assert (failure.reason, failure.message, failure.document) == ("truncated_image", "bad", doc)
    assert FakeStage().fail(doc, KeyError("x")).reason == "internal"
    assert isinstance(failure, StageFailure)


def test_batch_exception_does_not_commit_and_batch_is_redelivered(transport):
    """If the stage raises for the whole batch, nothing is produced or committed; after rewind it is retried."""
    publish(transport, event("a"), event("b"))
    stage = FakeStage()
    stage.raise_error = DependencyUnavailableError("milvus down")
    worker = StageWorker(stage, transport, IN, OUT)
    with pytest.raises(DependencyUnavailableError):
        worker.run_once()
    assert transport.messages(OUT) == []
    assert transport.lag(IN, worker.group) == 2
    transport.rewind_to_committed(IN, worker.group)
    stage.raise_error = None
    assert worker.run_once() == (2, 0)
    assert stage.batches == [["a", "b"], ["a", "b"]]
    assert [m.key for m in transport.messages(OUT)] == [b"a", b"b"]
    assert transport.lag(IN, worker.group) == 0


def test_run_once_on_empty_topic(transport):
    """Nothing waiting: (0, 0) and the stage is not called."""
    stage = FakeStage()
    assert StageWorker(stage, transport, IN, OUT).run_once() == (0, 0)
    assert stage.batches == []


def test_drain_processes_every_batch_and_returns_totals(transport):
    """drain() runs batches until the topic is empty and sums (ok, failed)."""
    publish(transport, *[event(f"ok-{i}") for i in range(7)], event("bad-x"), event("bad-y"))
    transport.produce(IN, b"junk", malformed_bytes(), {HEADER_SCHEMA: SCHEMA_EVENT})
    stage = FakeStage()
    worker = StageWorker(stage, transport, IN, OUT, batch_size=3)
    assert worker.drain() == (7, 3)
    # 10 messages in polls of 3: the last poll holds only the junk message, so the stage is not called for it.
    assert [len(b) for b in stage.batches] == [3, 3, 3]
    assert len(transport.messages(OUT)) == 7
    assert len(transport.messages(dlq_topic(IN))) == 3
    assert transport.lag(IN, worker.group) == 0
    assert worker.drain() == (0, 0)


def test_worker_refuses_to_commit_when_a_stage_drops_results():
    """A stage that returns fewer results than documents raises, and the batch stays uncommitted."""
    from visearch.shared.pipeline import Stage, StageWorker, encode_event
    from visearch.shared.transport import InProcessTransport
    from visearch.v1 import events_pb2

    class Lossy(Stage):
        name = "lossy"

        def process(self, documents):
            return documents[:-1]

    transport = InProcessTransport()
    for i in range(3):
        key, value, headers = encode_event(
            events_pb2.ImageEvent(image_id=f"i{i}", kind=events_pb2.ImageEvent.KIND_DELETE)
        )
        transport.produce("in", key, value, headers)
    worker = StageWorker(Lossy(), transport, "in", "out")
    with pytest.raises(RuntimeError, match="returned 2 results for 3"):
        worker.run_once()
    assert transport.lag("in", worker.group) == 3
    assert transport.messages("out") == []
