"""Pipeline stages and the worker loop that drives them over a transport.

A :class:`Stage` turns a batch of ImageDocuments into results (an enriched document, or a
:class:`StageFailure` with a reason); the :class:`StageWorker` does the rest, the same way for every
stage: poll a batch, decode payloads (malformed ones go to the DLQ), run the stage, produce outputs
and dead letters, flush, and only then commit the input offsets (at-least-once).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from PIL import Image
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential_jitter

from visearch.shared.config import ImageSettings, ThumbnailSettings
from visearch.shared.errors import InvalidEventError, VisearchError
from visearch.shared.images import decode_image, image_bytes
from visearch.shared.logging import get_logger
from visearch.shared.metrics import (
    DLQ_MESSAGES,
    STAGE_BATCH_SIZE,
    STAGE_ERRORS,
    STAGE_ITEMS,
    STAGE_RETRIES,
    STAGE_SECONDS,
)
from visearch.shared.thumbnails import make_thumbnail
from visearch.shared.transport import (
    HEADER_DLQ_ERROR,
    HEADER_DLQ_EXCEPTION,
    HEADER_DLQ_OFFSET,
    HEADER_DLQ_PARTITION,
    HEADER_DLQ_REASON,
    HEADER_DLQ_STAGE,
    HEADER_DLQ_TOPIC,
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

# Kafka's largest message by default (KafkaSettings.max_message_bytes); publishers pass their own.
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
# What a Kafka record batch adds to key + value + headers (batch and record headers, varints): a
# message within max_message_bytes minus this is accepted by the producer and the broker.
RECORD_OVERHEAD_BYTES = 1024

# Limits of event fields, in UTF-8 bytes. Identity fields must fit their store columns unchanged (a cut
# id would merge two images); text fields get generous caps that only absurd values break.
ID_FIELD_LIMITS = {"image_id": 512, "tenant": 64, "collection": 128, "trace_id": 128}
PRODUCT_FIELD_LIMITS = {"title": 4096, "description": 65536, "brand": 1024, "category": 1024, "currency": 16}
MAX_URI_BYTES = 2048
MAX_TAGS, MAX_TAG_BYTES = 256, 256
MAX_ATTRIBUTES, MAX_ATTRIBUTE_BYTES = 256, 4096  # entries; bytes of key + value of one entry
MAX_PRICE = 1e15  # a catalogue price above this is a unit or encoding error upstream
_CONTROL_CHARS = frozenset(map(chr, [*range(0x20), 0x7F]))


@dataclass
class StageFailure:
    """A document a stage could not process: ``reason`` slug (DLQ header, metric label) and message."""

    document: events_pb2.ImageDocument
    reason: str
    message: str
    error_type: str = "VisearchError"


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
        return StageFailure(document, reason, str(error), type(error).__name__)


class ImageStage(Stage):
    """A stage that runs models on each upsert's image; deletes and attribute updates pass through.

    It decodes each upsert's image (a bad one fails only its own document, with the decoder's reason),
    calls :meth:`process_images` with the decoded documents, and records the stage's time on every
    document. Subclasses implement :meth:`process_images`, which enriches the documents in place.
    """

    def __init__(self, image_settings: ImageSettings | None = None) -> None:
        self.image_settings = image_settings or ImageSettings()
        self.thumbnail_settings = ThumbnailSettings()

    @abstractmethod
    def process_images(
        self, documents: list[events_pb2.ImageDocument], images: list[Image.Image], encoded: list[bytes]
    ) -> None:
        """Enrich ``documents`` in place from their decoded ``images`` (RGB) and ``encoded`` bytes.

        Raise only for transient failures of the whole batch (see :class:`Stage`).
        """

    def process(self, documents: list[events_pb2.ImageDocument]) -> list[StageResult]:  # noqa: D102
        start = time.perf_counter()
        results: list[StageResult] = list(documents)
        pending, images, encoded = [], [], []
        for i, doc in enumerate(documents):
            if doc.event.kind != events_pb2.ImageEvent.KIND_UPSERT:
                continue
            try:
                data = image_bytes(doc.event.image, self.image_settings)
                images.append(decode_image(data, self.image_settings))
                if not doc.thumbnail:  # the first stage that decodes the image makes it (shared/thumbnails.py)
                    doc.thumbnail = make_thumbnail(
                        images[-1], self.thumbnail_settings.side, self.thumbnail_settings.quality
                    )
            except VisearchError as exc:
                results[i] = self.fail(doc, exc)
                continue
            pending.append(doc)
            encoded.append(data)
        if pending:
            self.process_images(pending, images, encoded)
        elapsed_ms = (time.perf_counter() - start) * 1000
        finished = Timestamp()
        finished.GetCurrentTime()
        for doc in documents:
            doc.stages.add(stage=self.name, duration_ms=elapsed_ms / max(len(documents), 1), finished_at=finished)
        return results


def encode_event(
    event: events_pb2.ImageEvent, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> tuple[bytes, bytes, dict[str, str]]:
    """Key, value and headers of the message that publishes ``event`` (a trace id is assigned if empty).

    Args:
        max_message_bytes: the topic's largest message (``VISEARCH_KAFKA_MAX_MESSAGE_BYTES``), bytes.

    Raises:
        InvalidEventError: (reason ``message_too_large``) key + value + headers + Kafka's record
            overhead (:data:`RECORD_OVERHEAD_BYTES`) exceed ``max_message_bytes``: the broker would
            refuse it. Send a large image by URI instead of inline.
    """
    if not event.trace_id:
        event.trace_id = uuid.uuid4().hex
    key, value = event.image_id.encode(), event.SerializeToString()
    headers = {HEADER_SCHEMA: SCHEMA_EVENT, HEADER_TRACE_ID: event.trace_id}
    check_message_size(key, value, headers, max_message_bytes)
    return key, value, headers


def message_size(key: bytes, value: bytes, headers: dict[str, str]) -> int:
    """Bytes of a message's key, value and headers (without Kafka's record overhead)."""
    return len(key) + len(value) + sum(len(k.encode()) + len(v.encode()) for k, v in headers.items())


def check_message_size(key: bytes, value: bytes, headers: dict[str, str], max_message_bytes: int) -> None:
    """Refuse a message the broker would refuse (see :func:`encode_event`).

    Raises:
        InvalidEventError: reason ``message_too_large``.
    """
    size = message_size(key, value, headers)
    if size + RECORD_OVERHEAD_BYTES > max_message_bytes:
        raise InvalidEventError(
            f"message is {size} bytes (+{RECORD_OVERHEAD_BYTES} record overhead) > the topic's limit of "
            f"{max_message_bytes} bytes (VISEARCH_KAFKA_MAX_MESSAGE_BYTES); send large images by URI",
            reason="message_too_large",
        )


def validate_event(event: events_pb2.ImageEvent) -> None:
    """Refuse absurd field values before any stage works on the event.

    Checks: ``kind`` is a known enum value; identity fields (:data:`ID_FIELD_LIMITS`, UTF-8 bytes) fit
    their limits and hold no control characters; product text, the image URI, tags and attributes fit
    theirs; the price is finite and in [0, MAX_PRICE].

    Raises:
        InvalidEventError: reasons ``unknown_kind``, ``field_too_long``, ``too_many_values``,
            ``invalid_id``, ``invalid_price``. (An upsert without an image is the image stages' to
            refuse, with ``missing_image``: a chain may have none.)
    """
    kinds = events_pb2.ImageEvent.Kind.values()
    if event.kind not in kinds:
        raise InvalidEventError(f"event kind {event.kind} is not one of {sorted(kinds)}", reason="unknown_kind")
    for name, limit in ID_FIELD_LIMITS.items():
        value = getattr(event, name)
        _check_length(name, value, limit)
        if not _CONTROL_CHARS.isdisjoint(value):
            raise InvalidEventError(f"{name} contains control characters: {value[:80]!r}", reason="invalid_id")
    if event.image.WhichOneof("source") == "uri":
        _check_length("image.uri", event.image.uri, MAX_URI_BYTES)
    product = event.product
    for name, limit in PRODUCT_FIELD_LIMITS.items():
        _check_length(f"product.{name}", getattr(product, name), limit)
    if len(product.tags) > MAX_TAGS:
        raise InvalidEventError(
            f"product.tags has {len(product.tags)} values > limit {MAX_TAGS}", reason="too_many_values"
        )
    for tag in product.tags:
        _check_length("a product tag", tag, MAX_TAG_BYTES)
    if len(product.attributes) > MAX_ATTRIBUTES:
        raise InvalidEventError(
            f"product.attributes has {len(product.attributes)} entries > limit {MAX_ATTRIBUTES}",
            reason="too_many_values",
        )
    for key, value in product.attributes.items():
        _check_length(f"product.attributes[{key[:40]!r}]", key + value, MAX_ATTRIBUTE_BYTES)
    if not (math.isfinite(product.price) and 0.0 <= product.price <= MAX_PRICE):
        raise InvalidEventError(
            f"product.price {product.price!r} is not a finite number in [0, {MAX_PRICE:g}]", reason="invalid_price"
        )


def _check_length(name: str, value: str, limit: int) -> None:
    if len(value) > limit or len(value.encode()) > limit:  # the character count is a cheap first check
        size = len(value.encode())
        if size > limit:
            raise InvalidEventError(f"{name} is {size} bytes > limit {limit}", reason="field_too_long")


def decode_message(message: Message) -> events_pb2.ImageDocument:
    """The ImageDocument a message carries (an ImageEvent is wrapped in a new document), its ``published_at``
    set from the record's timestamp when it has none (so the first stage stamps the publication time).

    Raises:
        InvalidEventError: (INVALID_ARGUMENT, permanent: the worker dead-letters the message) reason
            ``malformed_payload`` (not parseable), ``unknown_schema`` (another ``visearch-schema`` header, e.g. a
            future version), ``missing_image_id``, ``missing_kind``, or one of :func:`validate_event`'s reasons.
    """
    schema = message.headers.get(HEADER_SCHEMA, SCHEMA_EVENT)
    try:
        if schema == SCHEMA_EVENT:
            document = events_pb2.ImageDocument()
            document.event.ParseFromString(message.value)
        elif schema == SCHEMA_DOCUMENT:
            document = events_pb2.ImageDocument.FromString(message.value)
        else:
            raise InvalidEventError(f"unknown schema header {schema!r}", reason="unknown_schema")
    except DecodeError as exc:
        raise InvalidEventError(f"payload is not a valid {schema}: {exc}", reason="malformed_payload") from exc
    if not document.HasField("published_at") and message.timestamp_ms >= 0:
        # The first stage reads the published record: its timestamp travels on in the document (a document from
        # an older version without one gets its own record's, a lower bound of its age).
        document.published_at.FromMilliseconds(message.timestamp_ms)
    if not document.event.image_id:
        raise InvalidEventError("event has no image_id", reason="missing_image_id")
    if document.event.kind == events_pb2.ImageEvent.KIND_UNSPECIFIED:
        raise InvalidEventError("event kind is unspecified", reason="missing_kind")
    validate_event(document.event)
    return document


class DlqPolicyError(RuntimeError):
    """So many dead letters that the fault is probably ours (a bad deploy), not the data's: stop."""


class DlqPolicy:
    """Trips when ``max_consecutive`` items in a row, or ``max_ratio`` of the last ``window`` items
    (once the window is full), went to the DLQ. Checked before a batch is committed, so a tripped
    batch is neither dead-lettered nor committed: the fixed deploy reprocesses it."""

    def __init__(self, max_consecutive: int = 100, max_ratio: float = 0.5, window: int = 200) -> None:
        self.max_consecutive = max_consecutive
        self.max_ratio = max_ratio
        self._recent: deque[bool] = deque(maxlen=window)
        self._consecutive = 0

    def check(self, failed: list[bool]) -> None:
        """Raise DlqPolicyError if recording ``failed`` (one flag per item) would trip; else record it."""
        recent, consecutive = deque(self._recent, maxlen=self._recent.maxlen), self._consecutive
        for flag in failed:
            recent.append(flag)
            consecutive = consecutive + 1 if flag else 0
            if consecutive >= self.max_consecutive:
                raise DlqPolicyError(f"{consecutive} consecutive items failed")
            if len(recent) == recent.maxlen and sum(recent) / len(recent) >= self.max_ratio:
                raise DlqPolicyError(f"{sum(recent)} of the last {len(recent)} items failed")
        self._recent, self._consecutive = recent, consecutive


class StageWorker:
    """Drives one stage: ``input_topic`` -> stage -> ``output_topic`` (None: a terminal stage).

    Args:
        group: consumer group id (one per stage, so each stage scales and commits on its own).
        batch_size: max messages per poll, and so per model batch.
        policy: DLQ policy (default: never trips within a normal run).
        poll_timeout_s: how long a poll waits for the first record.
        max_message_bytes: the output topic's largest message (None: no limit, e.g. in process). An
            output document above it (the stage's results made it too big) is dead-lettered with reason
            ``message_too_large`` instead of failing the produce, which would stall the partition.
    """

    def __init__(
        self,
        stage: Stage,
        transport: Transport,
        input_topic: str,
        output_topic: str | None,
        group: str | None = None,
        batch_size: int = 32,
        policy: DlqPolicy | None = None,
        poll_timeout_s: float = 0.0,
        max_message_bytes: int | None = None,
    ) -> None:
        self.stage = stage
        self.transport = transport
        self.input_topic = input_topic
        self.output_topic = output_topic
        self.group = group or f"visearch-{stage.name}"
        self.batch_size = batch_size
        self.policy = policy or DlqPolicy()
        self.poll_timeout_s = poll_timeout_s
        self.max_message_bytes = max_message_bytes

    def run_once(self) -> tuple[int, int]:
        """Process one polled batch. Returns ``(ok, failed)`` counts; (0, 0) when nothing was waiting.

        Raises:
            VisearchError (transient) or another exception: nothing of the batch was committed.
            DlqPolicyError: the batch would trip the DLQ policy; nothing was produced or committed.
        """
        messages = self.transport.poll(self.input_topic, self.group, self.batch_size, self.poll_timeout_s)
        if not messages:
            return 0, 0
        start = time.perf_counter()
        documents, sources = [], []
        dead: list[tuple[Message, str, str, str]] = []  # (message, reason, error, exception class)
        for message in messages:
            try:
                documents.append(decode_message(message))
                sources.append(message)
            except VisearchError as exc:
                dead.append((message, exc.reason, str(exc), type(exc).__name__))
        results = self.stage.process(documents) if documents else []
        if len(results) != len(documents):  # a broken stage must not lose items silently: do not commit
            raise RuntimeError(
                f"stage {self.stage.name} returned {len(results)} results for {len(documents)} documents"
            )
        ok = 0
        outputs: list[tuple[Message, bytes, dict[str, str]]] = []  # (input message, value, headers) to produce
        for message, result in zip(sources, results):
            failure = result if isinstance(result, StageFailure) else None
            if not isinstance(result, StageFailure) and self.output_topic:
                encoded = self._encode_output(message, result)
                if isinstance(encoded, StageFailure):
                    failure = encoded
                else:
                    outputs.append((message, *encoded))
            if failure is not None:
                dead.append((message, failure.reason, failure.message, failure.error_type))
                log.warning(
                    "item_failed",
                    stage=self.stage.name,
                    image_id=failure.document.event.image_id,
                    trace_id=failure.document.event.trace_id,
                    reason=failure.reason,
                    error=failure.message,
                )
            else:
                ok += 1
        failed_ids = {id(m) for m, *_ in dead}
        self.policy.check([id(m) in failed_ids for m in messages])
        if self.output_topic:
            for message, value, headers in outputs:
                self.transport.produce(self.output_topic, message.key, value, headers)
        for message, reason, error, exc_type in dead:
            self._dead_letter(message, reason, error, exc_type)
        self.transport.flush()
        self.transport.commit(self.input_topic, self.group)
        elapsed = time.perf_counter() - start
        STAGE_SECONDS.labels(stage=self.stage.name).observe(elapsed)
        STAGE_BATCH_SIZE.labels(stage=self.stage.name).observe(len(messages))
        STAGE_ITEMS.labels(stage=self.stage.name, outcome="ok").inc(ok)
        STAGE_ITEMS.labels(stage=self.stage.name, outcome="failed").inc(len(dead))
        log.debug("batch_done", stage=self.stage.name, ok=ok, failed=len(dead), duration_ms=round(elapsed * 1000, 2))
        return ok, len(dead)

    def _encode_output(
        self, message: Message, document: events_pb2.ImageDocument
    ) -> tuple[bytes, dict[str, str]] | StageFailure:
        """The output message's value and headers, or a StageFailure when it is over max_message_bytes."""
        value, headers = document.SerializeToString(), {**message.headers, HEADER_SCHEMA: SCHEMA_DOCUMENT}
        if self.max_message_bytes is not None:
            try:
                check_message_size(message.key, value, headers, self.max_message_bytes)
            except InvalidEventError as exc:
                return self.stage.fail(document, exc)
        return value, headers

    def _dead_letter(self, message: Message, reason: str, error: str, exc_type: str) -> None:
        STAGE_ERRORS.labels(stage=self.stage.name, reason=reason).inc()
        DLQ_MESSAGES.labels(topic=self.input_topic, reason=reason).inc()
        headers = {
            **message.headers,
            HEADER_DLQ_REASON: reason,
            HEADER_DLQ_ERROR: error[:1000],
            HEADER_DLQ_STAGE: self.stage.name,
            HEADER_DLQ_TOPIC: message.topic,
            HEADER_DLQ_PARTITION: str(message.partition),
            HEADER_DLQ_OFFSET: str(message.offset),
            HEADER_DLQ_EXCEPTION: exc_type,
        }
        self.transport.produce(dlq_topic(self.input_topic), message.key, message.value, headers)

    def drain(self) -> tuple[int, int]:
        """Run batches until the input topic has nothing waiting. Returns total ``(ok, failed)``."""
        total_ok = total_failed = 0
        while True:
            ok, failed = self.run_once()
            if ok == failed == 0:
                return total_ok, total_failed
            total_ok += ok
            total_failed += failed

    def run(self, stop: threading.Event, retry_initial_s: float = 0.5, retry_max_s: float = 30.0) -> None:
        """Process batches until ``stop`` is set; the batch in flight finishes and is committed first.

        Transient failures (a VisearchError that is not permanent, e.g. Milvus or Kafka down) rewind
        the consumer to its committed offsets and retry after an exponential backoff with jitter
        (tenacity), so consumption pauses instead of skipping. DlqPolicyError and programming errors
        propagate: the process should stop and be looked at.
        """

        def backoff(seconds: float) -> None:  # cut short when stopped
            stop.wait(seconds)

        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            wait=wait_exponential_jitter(multiplier=retry_initial_s, max=retry_max_s),
            stop=lambda _state: stop.is_set(),
            sleep=backoff,
            before_sleep=self._before_retry,
            reraise=True,
        )
        while not stop.is_set():
            try:
                retrying(self.run_once)
            except VisearchError:
                if stop.is_set():  # stopped while backing off: nothing was committed, nothing lost
                    return
                raise

    def _before_retry(self, state: RetryCallState) -> None:
        outcome, action = state.outcome, state.next_action
        assert outcome is not None and action is not None  # tenacity sets both before before_sleep
        exc = outcome.exception()
        reason = getattr(exc, "reason", type(exc).__name__)
        STAGE_RETRIES.labels(stage=self.stage.name, reason=reason).inc()
        log.warning(
            "transient_failure",
            stage=self.stage.name,
            reason=reason,
            error=str(exc),
            attempt=state.attempt_number,
            backoff_s=round(action.sleep, 2),
        )
        try:
            self.transport.rewind_to_committed(self.input_topic, self.group)
        except Exception as rewind_exc:  # noqa: BLE001 (the broker may be the thing that is down)
            log.warning("rewind_failed", stage=self.stage.name, error=str(rewind_exc))


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, VisearchError) and not exc.permanent


def kafka_workers(stage: Stage) -> tuple[Callable[[threading.Event], None], ...]:
    """The Kafka worker loop of ``stage`` when ``VISEARCH_KAFKA_BOOTSTRAP`` is set and the stage is in
    ``VISEARCH_PIPELINE_STAGES``; else an empty tuple (the service serves its gRPC API only)."""
    from visearch.shared.config import KafkaSettings, PipelineSettings

    kafka, pipeline = KafkaSettings(), PipelineSettings()
    if not kafka.bootstrap or stage.name not in pipeline.stage_list:
        return ()
    from visearch.shared.kafka import stage_worker_loop

    return (stage_worker_loop(stage, kafka, pipeline.stage_list),)
