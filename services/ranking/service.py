"""Ranking service: the public Search API.

The query is embedded by the embedding service (over gRPC, or in-process in embedded mode, through
the same stub interface and with a deadline), candidates come from Milvus, and every hit carries its
factor scores. For now one factor per route: ``visual`` (image-image cosine, for image and
"more like this" queries) or ``text`` (text-image cosine in the ConSE joint space). The blended
multi-factor ranker comes with the ranking issue.
"""

from __future__ import annotations

import time

import grpc
import numpy as np

from visearch.shared.errors import InvalidEventError, NotFoundError
from visearch.shared.grpcutil import error_from_rpc, rpc_method
from visearch.shared.logging import get_logger
from visearch.shared.store import MilvusStore, SearchFilter, StoredHit
from visearch.v1 import embedding_pb2, search_pb2, search_pb2_grpc

log = get_logger("ranking")

SERVICE_NAME = "visearch.v1.SearchService"
DEFAULT_TOP_K = 10
MAX_TOP_K = 1000
MAX_WINDOW = 16384  # Milvus limit on offset + limit
FACTOR_WEIGHTS = {"visual": 1.0, "text": 1.0}


class SearchService(search_pb2_grpc.SearchServiceServicer):
    """Search by image, by text, or by indexed image id, with filters and pagination.

    Args:
        embedding: an EmbeddingService stub (``EmbedImage``/``EmbedText`` taking ``timeout``).
        store: the Milvus store.
        default_tenant: tenant used when the request names none.
        deadline_s: deadline for each call to the embedding service, seconds.
    """

    def __init__(self, embedding, store: MilvusStore, default_tenant: str = "default", deadline_s: float = 10.0) -> None:
        self.embedding = embedding
        self.store = store
        self.default_tenant = default_tenant
        self.deadline_s = deadline_s

    @rpc_method(SERVICE_NAME)
    def Search(self, request: search_pb2.SearchRequest, context) -> search_pb2.SearchResponse:  # noqa: N802
        """See protos/visearch/v1/search.proto. Raises INVALID_ARGUMENT, NOT_FOUND or UNAVAILABLE."""
        start = time.perf_counter()
        top_k = request.top_k or DEFAULT_TOP_K
        if not 1 <= top_k <= MAX_TOP_K:
            raise InvalidEventError(f"top_k must be in 1..{MAX_TOP_K}, got {top_k}", reason="bad_top_k")
        if request.offset < 0 or request.offset + top_k > MAX_WINDOW:
            raise InvalidEventError(f"offset must be >= 0 and offset + top_k <= {MAX_WINDOW}", reason="bad_offset")
        tenant = request.tenant or self.default_tenant
        flt = _filter(request.filter)
        query = request.WhichOneof("query")
        if query == "image":
            space, factor, vector = "image", "visual", self._embed_image(request.image)
        elif query == "text":
            if not request.text.strip():
                raise InvalidEventError("text query is empty", reason="empty_query")
            space, factor, vector = "joint", "text", self._embed_text(request.text)
        elif query == "image_id":
            row = self.store.get(tenant, request.image_id, "image")
            if row is None:
                raise NotFoundError(f"image {request.image_id!r} is not indexed for tenant {tenant!r}")
            space, factor, vector = "image", "visual", np.asarray(row["vector"], dtype=np.float32)
            flt.exclude_image_ids.append(request.image_id)
        else:
            raise InvalidEventError("set one of image, text or image_id", reason="empty_query")
        embedded = time.perf_counter()
        candidates = self.store.search(space, vector, tenant=tenant, top_k=top_k, offset=request.offset, filter=flt)
        done = time.perf_counter()
        log.info("search", query=query, tenant=tenant, top_k=top_k, hits=len(candidates),
                 embed_ms=round((embedded - start) * 1000, 2), ann_ms=round((done - embedded) * 1000, 2))
        return search_pb2.SearchResponse(hits=[_hit(c, factor) for c in candidates], took_ms=(done - start) * 1000)

    def _embed_image(self, image) -> np.ndarray:
        try:
            response = self.embedding.EmbedImage(embedding_pb2.EmbedImageRequest(images=[image]), timeout=self.deadline_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, "embedding.EmbedImage") from exc
        return np.asarray(response.embeddings[0].image.values, dtype=np.float32)

    def _embed_text(self, text: str) -> np.ndarray:
        try:
            response = self.embedding.EmbedText(embedding_pb2.EmbedTextRequest(texts=[text]), timeout=self.deadline_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, "embedding.EmbedText") from exc
        return np.asarray(response.vectors[0].values, dtype=np.float32)


def _filter(f: search_pb2.Filter) -> SearchFilter:
    return SearchFilter(
        categories=list(f.categories), brands=list(f.brands),
        in_stock=f.in_stock if f.HasField("in_stock") else None,
        price_min=f.price_min if f.HasField("price_min") else None,
        price_max=f.price_max if f.HasField("price_max") else None,
    )


def _hit(candidate: StoredHit, factor: str) -> search_pb2.Hit:
    fields = candidate.fields
    weight = FACTOR_WEIGHTS[factor]
    return search_pb2.Hit(
        image_id=candidate.image_id, score=weight * candidate.score, title=fields.get("title", ""),
        category=fields.get("category", ""), brand=fields.get("brand", ""), price=fields.get("price", 0.0),
        in_stock=fields.get("in_stock", False), uri=fields.get("uri", ""),
        factors=[search_pb2.FactorScore(name=factor, value=candidate.score, contribution=weight * candidate.score)],
    )
