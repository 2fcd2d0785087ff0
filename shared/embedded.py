"""Embedded mode: every service class wired in one process, for the demo, the CLI and tests.

Ingest publishes ImageEvents to the in-process transport and drives the same stage workers the
services run (embedding -> indexer); search calls the same SearchService, whose embedding stub is
the EmbeddingService in this process. Milvus Lite (a local .db file) is the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tqdm import tqdm

from visearch.shared.config import ConseSettings, ImageSettings, ModelSettings, ServiceSettings, StoreSettings
from visearch.shared.datasets import CatalogueItem
from visearch.shared.grpcutil import InProcessStub
from visearch.shared.pipeline import StageWorker, encode_event
from visearch.shared.store import MilvusStore
from visearch.shared.transport import HEADER_DLQ_ERROR, HEADER_DLQ_REASON, InProcessTransport, dlq_topic, stage_topics
from visearch.services.embedding.encoders import Embedder
from visearch.services.embedding.service import EmbeddingService, EmbeddingStage
from visearch.services.indexer.stage import IndexerStage
from visearch.services.ranking.service import SearchService
from visearch.v1 import common_pb2, events_pb2


@dataclass
class IngestReport:
    """Outcome of an ingest: counts, and for each failed item its image id, reason and message."""

    published: int = 0
    indexed: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)


def item_to_event(item: CatalogueItem, tenant: str = "", kind: int = events_pb2.ImageEvent.KIND_UPSERT) -> events_pb2.ImageEvent:
    """The ImageEvent an upstream system would publish for ``item`` (inline bytes, or its URI)."""
    image = common_pb2.Image(content=item.content) if item.content is not None else common_pb2.Image(uri=item.uri or "")
    event = events_pb2.ImageEvent(
        image_id=item.image_id, kind=kind, image=image, tenant=tenant,
        product=events_pb2.Product(title=item.title, description=item.description, brand=item.brand,
                                   category=item.category, price=item.price, in_stock=item.in_stock,
                                   tags=item.tags, attributes=item.attributes),
    )
    event.event_time.GetCurrentTime()
    return event


class EmbeddedPlatform:
    """Embedder + store + stage workers + search API in one process. Use as a context manager.

    Raises:
        ModelNotBuiltError: models are not built (run ``visearch models build``).
    """

    def __init__(self, store_settings: StoreSettings | None = None, model_settings: ModelSettings | None = None,
                 service_settings: ServiceSettings | None = None) -> None:
        service_settings = service_settings or ServiceSettings()
        self.tenant = service_settings.tenant
        image_settings = ImageSettings()
        self.embedder = Embedder.from_cache(model_settings or ModelSettings(), ConseSettings())
        self.store = MilvusStore(store_settings or StoreSettings())
        self.transport = InProcessTransport()
        batch = (model_settings or ModelSettings()).image_batch_size
        topics = stage_topics(["embedding", "indexer"])
        self.input_topic = topics["embedding"].input
        self.workers = [
            StageWorker(EmbeddingStage(self.embedder, image_settings), self.transport, topics["embedding"].input,
                        topics["embedding"].output, batch_size=batch),
            StageWorker(IndexerStage(self.store, self.tenant), self.transport, topics["indexer"].input, None, batch_size=256),
        ]
        self.embedding = EmbeddingService(self.embedder, image_settings)
        self.search = SearchService(InProcessStub(self.embedding), self.store, self.tenant)

    def publish(self, event: events_pb2.ImageEvent) -> None:
        """Publish one ImageEvent to the images topic, as an upstream system would."""
        key, value, headers = encode_event(event)
        self.transport.produce(self.input_topic, key, value, headers)

    def ingest(self, items: Iterable[CatalogueItem], chunk: int = 64, progress: bool = True,
               total: int | None = None, tenant: str | None = None) -> IngestReport:
        """Publish items as upsert events (for ``tenant``, default the platform's) and run them through
        every stage, ``chunk`` at a time.

        Bad images do not stop the run: they land in the DLQ topics and in ``report.failed``.
        """
        report = IngestReport()
        dlq_seen = {w.input_topic: len(self.transport.messages(dlq_topic(w.input_topic))) for w in self.workers}
        bar = tqdm(total=total, unit="img", desc="ingest", disable=not progress)
        batch: list[CatalogueItem] = []

        def run(batch: list[CatalogueItem]) -> None:
            for item in batch:
                self.publish(item_to_event(item, tenant or self.tenant))
            report.published += len(batch)
            for worker in self.workers:
                ok, _ = worker.drain()
                if worker.output_topic is None:
                    report.indexed += ok
            bar.update(len(batch))

        for item in items:
            batch.append(item)
            if len(batch) >= chunk:
                run(batch)
                batch = []
        if batch:
            run(batch)
        bar.close()
        if report.indexed:
            self.store.flush()  # seal the new rows so searches use the index (matters for Milvus Lite)
        for worker in self.workers:
            for message in self.transport.messages(dlq_topic(worker.input_topic))[dlq_seen[worker.input_topic]:]:
                report.failed.append((message.key.decode(), message.headers[HEADER_DLQ_REASON],
                                      message.headers.get(HEADER_DLQ_ERROR, "")))
        return report

    def close(self) -> None:
        """Close the store (Milvus Lite persists to its file)."""
        self.store.close()

    def __enter__(self) -> "EmbeddedPlatform":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
