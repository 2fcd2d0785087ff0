"""Indexer stage: the end of the chain; writes documents to Milvus (upsert, delete, attribute update).

Idempotent: rows are keyed by ``<tenant>/<image_id>``, so a redelivered event rewrites the same row.
A Milvus failure raises DependencyUnavailableError for the whole batch, so the worker does not
commit and the batch is redelivered once Milvus is back.
"""

from __future__ import annotations

import numpy as np

from visearch.shared.errors import InvalidEventError, NotFoundError
from visearch.shared.pipeline import Stage, StageResult
from visearch.shared.store import IndexRow, MilvusStore
from visearch.v1 import events_pb2

Kind = events_pb2.ImageEvent


class IndexerStage(Stage):
    """Applies each document to the store. ``default_tenant`` is used for events that name none."""

    name = "indexer"

    def __init__(self, store: MilvusStore, default_tenant: str = "default") -> None:
        self.store = store
        self.default_tenant = default_tenant

    def process(self, documents: list[events_pb2.ImageDocument]) -> list[StageResult]:  # noqa: D102
        results: list[StageResult] = list(documents)
        upserts: dict[str, IndexRow] = {}  # last write per primary key wins within a batch
        for i, doc in enumerate(documents):
            event = doc.event
            tenant = event.tenant or self.default_tenant
            try:
                if event.kind == Kind.KIND_UPSERT:
                    row = self._row(doc, tenant)
                    upserts[row.pk] = row
                elif event.kind == Kind.KIND_DELETE:
                    self._flush(upserts)
                    self.store.delete(tenant, [event.image_id])
                elif event.kind == Kind.KIND_ATTRIBUTE_UPDATE:
                    self._flush(upserts)
                    self._update_attributes(doc, tenant)
                else:
                    raise InvalidEventError(f"unknown event kind {event.kind}", reason="unknown_kind")
            except (InvalidEventError, NotFoundError) as exc:
                results[i] = self.fail(doc, exc)
        self._flush(upserts)
        return results

    def _flush(self, upserts: dict[str, IndexRow]) -> None:
        if upserts:
            self.store.upsert(upserts.values())
            upserts.clear()

    @staticmethod
    def _row(doc: events_pb2.ImageDocument, tenant: str) -> IndexRow:
        image_vec = np.asarray(doc.embeddings.image.values, dtype=np.float32)
        joint_vec = np.asarray(doc.embeddings.joint.values, dtype=np.float32)
        if image_vec.size == 0 or joint_vec.size == 0:
            raise InvalidEventError("upsert reached the indexer without embeddings", reason="missing_embeddings")
        event, product = doc.event, doc.event.product
        uri = event.image.uri if event.image.WhichOneof("source") == "uri" else ""
        return IndexRow(
            image_id=event.image_id, tenant=tenant, image_vector=image_vec, joint_vector=joint_vec,
            title=product.title, category=product.category, brand=product.brand, price=product.price,
            in_stock=product.in_stock, uri=uri, collection=event.collection, image_model=doc.embeddings.image_model,
        )

    def _update_attributes(self, doc: events_pb2.ImageDocument, tenant: str) -> None:
        """Rewrite the stored rows with the event's catalogue fields, keeping their vectors."""
        event, product = doc.event, doc.event.product
        image_row = self.store.get(tenant, event.image_id, "image")
        joint_row = self.store.get(tenant, event.image_id, "joint")
        if image_row is None or joint_row is None:
            raise NotFoundError(f"attribute update for {event.image_id!r}, which is not indexed", reason="not_indexed")
        self.store.upsert([IndexRow(
            image_id=event.image_id, tenant=tenant, image_vector=np.asarray(image_row["vector"], dtype=np.float32),
            joint_vector=np.asarray(joint_row["vector"], dtype=np.float32),
            title=product.title or image_row["title"], category=product.category or image_row["category"],
            brand=product.brand or image_row["brand"], price=product.price, in_stock=product.in_stock,
            uri=image_row["uri"], collection=event.collection or image_row["collection"],
        )])
