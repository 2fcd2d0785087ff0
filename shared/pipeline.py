"""Pipeline stages and the worker loop that drives them over a transport.

A :class:`Stage` turns a batch of ImageDocuments into results (an enriched document, or a
:class:`StageFailure` with a reason); the :class:`StageWorker` does the rest, the same way for every
stage: poll a batch, decode payloads (malformed ones go to the DLQ), run the stage, produce outputs
and dead letters, flush, and only then commit the input offsets (at-least-once).
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from visearch.shared.errors import VisearchError
from visearch.shared.logging import get_logger
from visearch.shared.metrics import STAGE_ERRORS, STAGE_ITEMS, STAGE_SECONDS
from visearch.shared.transport import (
    HEADER_DLQ_ERROR,
    HEADER_DLQ_REASON,
    HEADER_DLQ_STAGE,
    HEADER_SCHEMA,
    HEADER_TRACE_ID,
    Message,
    Transport,
    dlq_topic,
)
from visearch.v1 import events_pb2

log = get_logger("pipeline")

SCHEMA_EVENT = "visearch.v1.ImageEvent"
SCHEMA_DOCUMENT = "visearch.v1.ImageDocument"


@dataclass
class StageFailure:
    """A document a stage could not process: ``reason`` slug (DLQ header, metric label) and message."""

    document: events_pb2.ImageDocument
    reason: str
    message: str


StageResult = events_pb2.ImageDocument | StageFailure


class Stage(ABC):
    """One enrichment step. Subclasses set ``name`` and implement :meth:`process`.

    ``process`` must return exactly one result per input document, in order. It raises only for
    transient failures of the whole batch (a dependency down): the worker then does not commit, and
    the batch is redelivered. Per-item problems (bad image) are returned as StageFailure.
    """

    name: str = "stage"

    @abstractmethod
    def process(self, documents: list[events_pb2.ImageDocument]) -> list[StageResult]:
        """Process a batch; see the class docstring for the contract."""

    def fail(self, document: events_pb2.ImageDocument, error: Exception) -> StageFailure:
        """A StageFailure from an exception (VisearchError reasons are kept; others are ``internal``)."""
        reason = error.reason if isinstance(error, VisearchError) else "internal"
        return StageFailure(document, reason, str(error))


def encode_event(event: events_pb2.ImageEvent) -> tuple[bytes, bytes, dict[str, str]]:
    """Key, value and headers of the message that publishes ``event`` (a trace id is assigned if empty)."""
    if not event.trace_id:
        event.trace_id = uuid.uuid4().hex
    return event.image_id.encode(), event.SerializeToString(), {HEADER_SCHEMA: SCHEMA_EVENT, HEADER_TRACE_ID: event.trace_id}


def decode_message(message: Message) -> events_pb2.ImageDocument:
    """The ImageDocument a message carries (an ImageEvent is wrapped in a new document).

    Raises:
        VisearchError: reason ``malformed_payload`` (not parseable) or ``unknown_schema``.
    """
    schema = message.headers.get(HEADER_SCHEMA, SCHEMA_EVENT)
    try:
        if schema == SCHEMA_EVENT:
            document = events_pb2.ImageDocument()
            document.event.ParseFromString(message.value)
        elif schema == SCHEMA_DOCUMENT:
            document = events_pb2.ImageDocument.FromString(message.value)
        else:
            raise VisearchError(f"unknown schema header {schema!r}", reason="unknown_schema")
    except DecodeError as exc:
        raise VisearchError(f"payload is not a valid {schema}: {exc}", reason="malformed_payload") from exc
    if not document.event.image_id:
        raise VisearchError("event has no image_id", reason="missing_image_id")
    if document.event.kind == events_pb2.ImageEvent.KIND_UNSPECIFIED:
        raise VisearchError("event kind is unspecified", reason="missing_kind")
    return document


class StageWorker:
    """Drives one stage: ``input_topic`` -> stage -> ``output_topic`` (None: a terminal stage).

    Args:
        group: consumer group id (one per stage, so each stage scales and commits on its own).
        batch_size: max messages per poll, and so per model batch.
    """

    def __init__(self, stage: Stage, transport: Transport, input_topic: str, output_topic: str | None,
                 group: str | None = None, batch_size: int = 32) -> None:
        self.stage = stage
        self.transport = transport
        self.input_topic = input_topic
        self.output_topic = output_topic
        self.group = group or f"visearch-{stage.name}"
        self.batch_size = batch_size

    def run_once(self) -> tuple[int, int]:
        """Process one polled batch. Returns ``(ok, failed)`` counts; (0, 0) when nothing was waiting."""
        messages = self.transport.poll(self.input_topic, self.group, self.batch_size)
        if not messages:
            return 0, 0
        start = time.perf_counter()
        documents, sources, failed = [], [], 0
        for message in messages:
            try:
                documents.append(decode_message(message))
                sources.append(message)
            except VisearchError as exc:
                self._dead_letter(message.key, message.value, message.headers, exc.reason, str(exc))
                failed += 1
        results = self.stage.process(documents) if documents else []
        if len(results) != len(documents):  # a broken stage must not lose items silently: do not commit
            raise RuntimeError(f"stage {self.stage.name} returned {len(results)} results for {len(documents)} documents")
        ok = 0
        for message, result in zip(sources, results):
            if isinstance(result, StageFailure):
                failed += 1
                self._dead_letter(message.key, message.value, message.headers, result.reason, result.message)
                log.warning("item_failed", stage=self.stage.name, image_id=result.document.event.image_id,
                            trace_id=result.document.event.trace_id, reason=result.reason, error=result.message)
                continue
            ok += 1
            if self.output_topic:
                headers = {**message.headers, HEADER_SCHEMA: SCHEMA_DOCUMENT}
                self.transport.produce(self.output_topic, message.key, result.SerializeToString(), headers)
        self.transport.flush()
        self.transport.commit(self.input_topic, self.group)
        elapsed = time.perf_counter() - start
        STAGE_SECONDS.labels(stage=self.stage.name).observe(elapsed)
        STAGE_ITEMS.labels(stage=self.stage.name, outcome="ok").inc(ok)
        STAGE_ITEMS.labels(stage=self.stage.name, outcome="failed").inc(failed)
        log.debug("batch_done", stage=self.stage.name, ok=ok, failed=failed, duration_ms=round(elapsed * 1000, 2))
        return ok, failed

    def _dead_letter(self, key: bytes, value: bytes, headers: dict[str, str], reason: str, error: str) -> None:
        STAGE_ERRORS.labels(stage=self.stage.name, reason=reason).inc()
        dlq_headers = {**headers, HEADER_DLQ_REASON: reason, HEADER_DLQ_ERROR: error[:1000], HEADER_DLQ_STAGE: self.stage.name}
        self.transport.produce(dlq_topic(self.input_topic), key, value, dlq_headers)

    def drain(self) -> tuple[int, int]:
        """Run batches until the input topic has nothing waiting. Returns total ``(ok, failed)``."""
        total_ok = total_failed = 0
        while True:
            ok, failed = self.run_once()
            if ok == failed == 0:
                return total_ok, total_failed
            total_ok += ok
            total_failed += failed
