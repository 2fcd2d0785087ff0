"""Embedded mode: every service class wired in one process, for the demo, the CLI and tests.

Ingest publishes ImageEvents to the in-process transport and drives the same stage workers the
services run (detection -> embedding -> ocr -> classification -> indexer, or the stages configured);
search calls the same SearchService, whose stubs are the recognition services in this process.
Milvus Lite (a local .db file) is the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from visearch.services.classification.classifier import Classifier
from visearch.services.classification.service import ClassificationService, ClassificationStage
from visearch.services.detection.detector import Detector
from visearch.services.detection.service import DetectionService, DetectionStage
from visearch.services.embedding.service import EmbeddingService, EmbeddingStage
from visearch.services.indexer.stage import IndexerStage
from visearch.services.ocr.reader import TextReader
from visearch.services.ocr.service import OcrService, OcrStage
from visearch.services.profiles.folder import ProfileFolder
from visearch.services.ranking.service import SearchService
from visearch.shared.config import (
    ClassificationSettings,
    ConseSettings,
    DetectionSettings,
    ImageSettings,
    ModelSettings,
    OcrSettings,
    PersonalisationSettings,
    PipelineSettings,
    RankingSettings,
    ServiceSettings,
    StoreSettings,
)
from visearch.shared.encoders import Embedder
from visearch.shared.grpcutil import InProcessStub
from visearch.shared.pipeline import StageWorker, encode_event
from visearch.shared.profile_topic import InProcessProfileTail, ProfileBook, profiles_topic
from visearch.shared.store import MilvusStore
from visearch.shared.thumbnails import ThumbnailStore
from visearch.shared.transport import (
    HEADER_DLQ_ERROR,
    HEADER_DLQ_REASON,
    InProcessTransport,
    dlq_topic,
    feedback_topic,
    stage_topics,
)
from visearch.v1 import common_pb2, events_pb2

if TYPE_CHECKING:  # the sample catalogues are offline tooling; serving only needs the item's shape
    from visearch.offline.datasets import CatalogueItem


@dataclass
class IngestReport:
    """Outcome of an ingest: counts, and for each failed item its image id, reason and message."""

    published: int = 0
    indexed: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)


def item_to_event(
    item: CatalogueItem, tenant: str = "", kind: int = events_pb2.ImageEvent.KIND_UPSERT
) -> events_pb2.ImageEvent:
    """The ImageEvent an upstream system would publish for ``item`` (inline bytes, or its URI)."""
    image = common_pb2.Image(content=item.content) if item.content is not None else common_pb2.Image(uri=item.uri or "")
    event = events_pb2.ImageEvent(
        image_id=item.image_id,
        kind=kind,
        image=image,
        tenant=tenant,
        product=events_pb2.Product(
            title=item.title,
            description=item.description,
            brand=item.brand,
            category=item.category,
            price=item.price,
            in_stock=item.in_stock,
            tags=item.tags,
            attributes=item.attributes,
        ),
    )
    event.event_time.GetCurrentTime()
    return event


class EmbeddedPlatform:
    """Embedder + store + stage workers + search API in one process. Use as a context manager.

    ``image_settings`` (default: from the environment) apply to every stage and service of the
    platform; ingesting catalogue items by local path needs ``ImageSettings(allow_file_uris=True)``.

    Raises:
        ModelNotBuiltError: models are not built (run ``visearch models build``).
    """

    def __init__(
        self,
        store_settings: StoreSettings | None = None,
        model_settings: ModelSettings | None = None,
        service_settings: ServiceSettings | None = None,
        stages: list[str] | None = None,
        image_settings: ImageSettings | None = None,
        ranking_settings: RankingSettings | None = None,
        thumbnails: ThumbnailStore | None = None,
        personalisation_settings: PersonalisationSettings | None = None,
    ) -> None:
        service_settings = service_settings or ServiceSettings()
        models = model_settings or ModelSettings()
        self.tenant = service_settings.tenant
        self.stages = stages if stages is not None else PipelineSettings().stage_list
        image_settings, detection_settings = image_settings or ImageSettings(), DetectionSettings()
        self.embedder = Embedder.from_cache(models, ConseSettings())
        self.store = MilvusStore(store_settings or StoreSettings())
        self.thumbnails = thumbnails or ThumbnailStore.from_settings() or _beside(self.store.settings.uri)
        self.transport = InProcessTransport()
        topics = stage_topics(self.stages)
        self.input_topic = next(iter(topics.values())).input
        self.embedding = EmbeddingService(self.embedder, image_settings)
        self.detection = self.ocr = self.classification = None
        stage_objects = {
            "embedding": EmbeddingStage(self.embedder, image_settings, detection_settings=detection_settings),
            "indexer": IndexerStage(self.store, self.tenant, thumbnails=self.thumbnails),
        }
        if "detection" in self.stages:
            detector = Detector.from_cache(models, detection_settings)
            self.detection = DetectionService(detector, image_settings)
            stage_objects["detection"] = DetectionStage(detector, image_settings)
        if "ocr" in self.stages:
            reader = TextReader.from_cache(models, OcrSettings())
            self.ocr = OcrService(reader, image_settings)
            stage_objects["ocr"] = OcrStage(reader, image_settings)
        if "classification" in self.stages:
            classifier = Classifier.from_cache(models, ClassificationSettings(), self.embedder)
            self.classification = ClassificationService(
                classifier, image_settings, _stub(self.detection), _stub(self.ocr)
            )
            stage_objects["classification"] = ClassificationStage(classifier, image_settings)
        self._stage_objects = stage_objects
        self._batch_size = models.image_batch_size
        self.workers = self._workers(self.stages)
        # Impressions and Feedback go to the in-process feedback topic (read by `visearch rank fit` in tests), the
        # profiles to the in-process profiles topic, which the service's book follows.
        personalisation, profile_book = personalisation_settings or PersonalisationSettings(), ProfileBook()
        self.search = SearchService(
            InProcessStub(self.embedding),
            self.store,
            self.tenant,
            detection=_stub(self.detection),
            classification=_stub(self.classification),
            ocr=_stub(self.ocr),
            image_settings=image_settings,
            detection_settings=detection_settings,
            ranking=ranking_settings or RankingSettings(),
            feedback=self.transport,
            profiles=(profile_book, InProcessProfileTail(self.transport, profiles_topic(), profile_book).sync),
            personalisation=personalisation,
        )
        # The profile folder (`visearch serve profiles` over Kafka) with its own view of the profiles topic.
        self.profile_folder = ProfileFolder(
            self.transport, ProfileBook(), feedback_topic(), profiles_topic(), personalisation, poll_timeout_s=0.0
        )
        self._folder_tail = InProcessProfileTail(self.transport, profiles_topic(), self.profile_folder.book)

    def _workers(self, stages: list[str], transport: InProcessTransport | None = None) -> list[StageWorker]:
        """Stage workers for a chain of the loaded stages (its topics follow the chain, as over Kafka).

        A shorter chain gets its own transport: its topics overlap the main chain's (its embedding
        stage reads the images topic), and sharing them would replay the main chain's events.
        """
        missing = [s for s in stages if s not in self._stage_objects]
        if missing:
            raise ValueError(f"stages {missing} are not loaded in this platform (loaded: {self.stages})")
        transport = transport or self.transport
        return [
            StageWorker(
                self._stage_objects[name],
                transport,
                t.input,
                t.output,
                batch_size=256 if name == "indexer" else self._batch_size,
            )
            for name, t in stage_topics(stages).items()
        ]

    def fold_profiles(self) -> int:
        """Fold the feedback published so far into user profiles (what ``visearch serve profiles`` does over
        Kafka); returns the events folded."""
        self._folder_tail.sync()
        folded = 0
        while (report := self.profile_folder.run_once()).records:
            folded += report.folded
        return folded

    def publish(self, event: events_pb2.ImageEvent) -> None:
        """Publish one ImageEvent to the images topic, as an upstream system would."""
        key, value, headers = encode_event(event)
        self.transport.produce(self.input_topic, key, value, headers)

    def ingest(
        self,
        items: Iterable[CatalogueItem],
        chunk: int = 64,
        progress: bool = True,
        total: int | None = None,
        tenant: str | None = None,
        stages: list[str] | None = None,
    ) -> IngestReport:
        """Publish items as upsert events (for ``tenant``, default the platform's) and run them through
        every stage, ``chunk`` at a time.

        ``stages`` runs a shorter chain of the loaded stages for these items (e.g. thumbnails without
        detection and OCR), the way a deployment's VISEARCH_PIPELINE_STAGES would; it must end with
        the indexer. Bad images do not stop the run: they land in the DLQ topics and in ``report.failed``.

        Raises:
            ValueError: ``stages`` names a stage this platform did not load, or does not end with the indexer.
        """
        if stages is None or list(stages) == self.stages:
            workers, transport = self.workers, self.transport
        else:
            transport = InProcessTransport()
            workers = self._workers(list(stages), transport)
        report = IngestReport()
        dlq_seen = {w.input_topic: len(transport.messages(dlq_topic(w.input_topic))) for w in workers}
        bar = tqdm(total=total, unit="img", desc="ingest", disable=not progress)
        batch: list[CatalogueItem] = []

        def run(batch: list[CatalogueItem]) -> None:
            for item in batch:
                key, value, headers = encode_event(item_to_event(item, tenant or self.tenant))
                transport.produce(workers[0].input_topic, key, value, headers)
            report.published += len(batch)
            for worker in workers:
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
            if self.search.text_index is not None:  # the in-process BM25 (per_space layout) sees the new rows at once
                self.search.text_index.invalidate(tenant or self.tenant)
        for worker in workers:
            for message in transport.messages(dlq_topic(worker.input_topic))[dlq_seen[worker.input_topic] :]:
                report.failed.append(
                    (
                        message.key.decode(),
                        message.headers[HEADER_DLQ_REASON],
                        message.headers.get(HEADER_DLQ_ERROR, ""),
                    )
                )
        return report

    def close(self) -> None:
        """Close the store (Milvus Lite persists to its file)."""
        self.store.close()

    def __enter__(self) -> EmbeddedPlatform:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stub(servicer) -> InProcessStub | None:
    return InProcessStub(servicer) if servicer is not None else None


def _beside(uri: str) -> ThumbnailStore | None:
    """A thumbnail store in ``<db>.thumbnails`` next to a Milvus Lite file, None for a Milvus server."""
    if "://" in uri:
        return None
    return ThumbnailStore(Path(uri).with_name(Path(uri).name + ".thumbnails"))
