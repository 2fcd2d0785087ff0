"""Indexer stage: the end of the chain; writes documents to Milvus (upsert, delete, attribute update).

Idempotent: rows are keyed by ``<tenant>/<image_id>``, so a redelivered event rewrites the same row.
A Milvus failure raises DependencyUnavailableError for the whole batch, so the worker does not
commit and the batch is redelivered once Milvus is back.

Freshness: when a write returns, each event it applied is searchable; ``visearch_ingest_freshness_seconds``
observes the time since the event's publication (:func:`published_s`), by kind.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from visearch.shared.duplicates import NEAR_DUPLICATE_MAX_DISTANCE as DUPLICATE_MAX_DISTANCE
from visearch.shared.duplicates import hash_distance
from visearch.shared.errors import DependencyUnavailableError, InvalidEventError, NotFoundError
from visearch.shared.metrics import INGEST_FRESHNESS
from visearch.shared.pipeline import Stage, StageResult
from visearch.shared.store import IndexRow, MilvusStore, RegionRow, SearchFilter
from visearch.shared.thumbnails import ThumbnailStore
from visearch.v1 import events_pb2

Kind = events_pb2.ImageEvent
DUPLICATE_CANDIDATES = 5  # visual neighbours whose perceptual hash is compared at ingest
TAG_ATTRIBUTES = ("object", "colour", "concept")
# The freshness histogram's kind label (low cardinality: three values, no tenant).
KIND_LABELS = {Kind.KIND_UPSERT: "upsert", Kind.KIND_DELETE: "delete", Kind.KIND_ATTRIBUTE_UPDATE: "attribute_update"}


class IndexerStage(Stage):
    """Applies each document to the store. ``default_tenant`` is used for events that name none.

    With a ``thumbnails`` store, an upsert's ``thumbnail`` is written there once its row is in Milvus, and a
    delete removes it (shared/thumbnails.py).
    """

    name = "indexer"

    def __init__(
        self,
        store: MilvusStore,
        default_tenant: str = "default",
        duplicate_max_distance: int = DUPLICATE_MAX_DISTANCE,
        thumbnails: ThumbnailStore | None = None,
    ) -> None:
        self.store = store
        self.thumbnails = thumbnails
        self.default_tenant = default_tenant
        self.duplicate_max_distance = duplicate_max_distance
        for kind in KIND_LABELS.values():  # every series from 0, so rate() sees the first events too
            INGEST_FRESHNESS.labels(kind=kind)

    def process(self, documents: list[events_pb2.ImageDocument]) -> list[StageResult]:  # noqa: D102
        results: list[StageResult] = list(documents)
        upserts: dict[str, IndexRow] = {}  # last write per primary key wins within a batch
        written: list[events_pb2.ImageDocument] = []  # the upserts' documents, searchable once upserts are flushed
        for i, doc in enumerate(documents):
            event = doc.event
            tenant = event.tenant or self.default_tenant
            try:
                if event.kind == Kind.KIND_UPSERT:
                    row = self._row(doc, tenant)
                    upserts[row.pk] = row
                    written.append(doc)
                elif event.kind == Kind.KIND_DELETE:
                    self._flush(upserts, written)
                    self.store.delete(tenant, [event.image_id])
                    if self.thumbnails is not None:
                        self.thumbnails.delete(tenant, event.image_id)
                    observe_freshness([doc])
                elif event.kind == Kind.KIND_ATTRIBUTE_UPDATE:
                    self._flush(upserts, written)
                    self._update_attributes(doc, tenant)
                    observe_freshness([doc])
                else:
                    raise InvalidEventError(f"unknown event kind {event.kind}", reason="unknown_kind")
            except (InvalidEventError, NotFoundError) as exc:
                results[i] = self.fail(doc, exc)
        self._flush(upserts, written)
        return results

    def _flush(self, upserts: dict[str, IndexRow], written: list[events_pb2.ImageDocument]) -> None:
        if upserts:
            self._mark_duplicates(list(upserts.values()))
            self.store.upsert(upserts.values())
            upserts.clear()
            self._write_thumbnails(written)
            observe_freshness(written)
            written.clear()

    @staticmethod
    def _row(doc: events_pb2.ImageDocument, tenant: str) -> IndexRow:
        image_vec = np.asarray(doc.embeddings.image.values, dtype=np.float32)
        joint_vec = np.asarray(doc.embeddings.joint.values, dtype=np.float32)
        if image_vec.size == 0 or joint_vec.size == 0:
            raise InvalidEventError("upsert reached the indexer without embeddings", reason="missing_embeddings")
        event, product, cls = doc.event, doc.event.product, doc.classification
        uri = event.image.uri if event.image.WhichOneof("source") == "uri" else ""
        colour = np.asarray(cls.colour_descriptor.values, dtype=np.float32) if cls.colour_descriptor.values else None
        return IndexRow(
            image_id=event.image_id,
            tenant=tenant,
            image_vector=image_vec,
            joint_vector=joint_vec,
            title=product.title,
            category=product.category,
            brand=product.brand,
            price=product.price,
            in_stock=product.in_stock,
            uri=uri,
            collection=event.collection,
            image_model=doc.embeddings.image_model,
            description=product.description,
            ocr_text="\n".join(line.text for line in doc.text_lines),
            tags=model_tags(doc),
            taxonomy=" > ".join(node.name for node in cls.taxonomy),
            safe=cls.moderation.safe if doc.HasField("classification") else True,
            phash=cls.phash,
            colour_vector=colour,
            attributes=[(a.name, a.value, a.score) for a in cls.attributes],
            regions=[
                RegionRow(
                    index=r.index,
                    label=r.detection.label,
                    score=r.detection.score,
                    box=(r.detection.box.x1, r.detection.box.y1, r.detection.box.x2, r.detection.box.y2),
                    vector=np.asarray(r.embedding.values, dtype=np.float32),
                )
                for r in doc.regions
            ],
        )

    def _mark_duplicates(self, rows: list[IndexRow]) -> None:
        """Flag each row that is a near-duplicate of an image already indexed for its tenant.

        Candidates are the row's nearest visual neighbours (one batched ANN query per tenant); a
        candidate whose perceptual hash is within ``duplicate_max_distance`` bits is the original.
        """
        by_tenant: dict[str, list[IndexRow]] = {}
        for row in rows:
            if row.phash:
                by_tenant.setdefault(row.tenant, []).append(row)
        for tenant, group in by_tenant.items():
            vectors = np.stack([r.image_vector for r in group])
            ids = [r.image_id for r in group]
            neighbours = self.store.search_many(
                "image",
                vectors,
                tenant=tenant,
                top_k=DUPLICATE_CANDIDATES,
                filter=SearchFilter(exclude_image_ids=ids),
                output_fields=("phash", "duplicate_of"),
            )
            for row, hits in zip(group, neighbours):
                close = [
                    h
                    for h in hits
                    if h.fields.get("phash")
                    and hash_distance(row.phash, int(h.fields["phash"])) <= self.duplicate_max_distance
                ]
                row.duplicate_of = close[0].fields.get("duplicate_of") or close[0].image_id if close else ""

    def _write_thumbnails(self, written: list[events_pb2.ImageDocument]) -> None:
        """Store the thumbnails of documents whose rows were just written (a store failure is transient)."""
        if self.thumbnails is None:
            return
        for doc in written:
            if doc.thumbnail:
                try:
                    self.thumbnails.put(doc.event.tenant or self.default_tenant, doc.event.image_id, doc.thumbnail)
                except ValueError:  # not a JPEG: a publisher's stray field; the row stays, without a thumbnail
                    continue
                except OSError as exc:
                    raise DependencyUnavailableError(f"thumbnail store {self.thumbnails.root}: {exc}") from exc

    def _update_attributes(self, doc: events_pb2.ImageDocument, tenant: str) -> None:
        """Rewrite the stored rows with the event's catalogue fields, keeping their vectors."""
        event, product = doc.event, doc.event.product
        changes: dict[str, Any] = {"price": product.price, "in_stock": product.in_stock}
        for name in ("title", "category", "brand", "description"):
            if getattr(product, name):
                changes[name] = getattr(product, name)
        if event.collection:
            changes["collection"] = event.collection
        if not self.store.update_attributes(tenant, event.image_id, changes):
            raise NotFoundError(f"attribute update for {event.image_id!r}, which is not indexed", reason="not_indexed")


def published_s(doc: events_pb2.ImageDocument) -> float | None:
    """When the document's event was published, seconds since the epoch: the event's ``event_time`` when the
    publisher set it, else ``published_at`` (its Kafka record's timestamp on the images topic); None if neither."""
    for stamp in (doc.event.event_time, doc.published_at):
        if stamp.seconds or stamp.nanos:
            return stamp.seconds + stamp.nanos / 1e9
    return None


def observe_freshness(documents: Iterable[events_pb2.ImageDocument], now_s: float | None = None) -> None:
    """Observe each document's publish-to-searchable time (its write returned just now), by event kind.

    A clock ahead of ours (an upstream event_time in the future) counts as 0 s; a document with no publication
    time (an in-process test without one) is not observed.
    """
    now = time.time() if now_s is None else now_s
    for doc in documents:
        published = published_s(doc)
        kind = KIND_LABELS.get(doc.event.kind)
        if published is not None and kind is not None:
            INGEST_FRESHNESS.labels(kind=kind).observe(max(now - published, 0.0))


def model_tags(doc: events_pb2.ImageDocument) -> list[str]:
    """The tags stored with an image: catalogue tags, then the model's object, colour and concept values."""
    tags = list(doc.event.product.tags)
    for attribute in doc.classification.attributes:
        if attribute.name in TAG_ATTRIBUTES and attribute.value not in tags:
            tags.append(attribute.value)
    return tags
