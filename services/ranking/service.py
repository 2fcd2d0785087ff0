"""Ranking service: the public search API (Search, SimilarTo, Tag).

Queries are understood by the recognition services (over gRPC, or in-process in embedded mode, through
the same stub interface and with deadlines): the embedding service embeds query images, regions and
texts; the detection service finds the objects of a query image. Candidates come from Milvus by the
query's routes (global visual vectors, region vectors, the joint image-text space, colour
descriptors), filters applied in Milvus; every hit carries its factor scores. Exact-match requests are
verified with perceptual hashes and ORB keypoints + RANSAC. The blended multi-factor ranker and
learned weights come with the ranking issue; for now a hit's score is its best route's cosine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import grpc
import numpy as np
from PIL import Image

from visearch.shared.config import DetectionSettings, ImageSettings
from visearch.shared.duplicates import (
    NEAR_DUPLICATE_MAX_DISTANCE,
    hash_distance,
    is_exact_match,
    local_features,
    perceptual_hash,
    verify_match,
)
from visearch.shared.errors import InvalidEventError, NotFoundError, VisearchError
from visearch.shared.grpcutil import error_from_rpc, rpc_method
from visearch.shared.images import decode_image, image_bytes, read_uri
from visearch.shared.logging import get_logger
from visearch.shared.store import MilvusStore, SearchFilter, StoredHit
from visearch.services.classification.colour import colour_descriptor, palette_descriptor
from visearch.services.embedding.service import select_regions
from visearch.services.ranking.open_tags import aggregate_phrases
from visearch.v1 import (
    classification_pb2,
    common_pb2,
    detection_pb2,
    embedding_pb2,
    search_pb2,
    search_pb2_grpc,
)

log = get_logger("ranking")

SERVICE_NAME = "visearch.v1.SearchService"
DEFAULT_TOP_K = 10
MAX_TOP_K = 1000
MAX_WINDOW = 16384  # Milvus limit on offset + limit
EXACT_CANDIDATES = 50  # visual neighbours verified for an exact-match request
DEFAULT_TAG_NEIGHBOURS, MAX_TAG_NEIGHBOURS = 20, 200
DEFAULT_TAG_PHRASES, MAX_TAG_PHRASES = 10, 100
Mode = search_pb2.RegionMode


@dataclass
class Candidate:
    """A hit being assembled from one or more routes: the best score, its factors, the matched region."""

    stored: StoredHit
    score: float = -2.0
    factors: dict[str, float] = field(default_factory=dict)
    region: search_pb2.RegionMatch | None = None
    best: str = ""  # the factor that set the score (its contribution is the score's)

    def offer(self, factor: str, value: float, region: search_pb2.RegionMatch | None = None) -> None:
        """Record a route's similarity; the best route sets the score (and the region, if it was a region)."""
        self.factors[factor] = max(value, self.factors.get(factor, -2.0))
        if value > self.score:
            self.score, self.region, self.best = value, region, factor


class SearchService(search_pb2_grpc.SearchServiceServicer):
    """Search by image, region, text, colour or indexed image id; similar and exact matches; open tags.

    Args:
        embedding: EmbeddingService stub (``EmbedImage``/``EmbedRegions``/``EmbedText`` taking ``timeout``).
        store: the Milvus store.
        detection: DetectionService stub, for REGION_MODE_QUERY_OBJECTS (None: that mode is UNAVAILABLE).
        classification: ClassificationService stub, for the model tags of a query image in ``Tag``.
        default_tenant: tenant used when the request names none.
        deadline_s: deadline of each call to another service, seconds.
    """

    def __init__(self, embedding, store: MilvusStore, default_tenant: str = "default", deadline_s: float = 10.0,
                 detection=None, classification=None, image_settings: ImageSettings | None = None,
                 detection_settings: DetectionSettings | None = None) -> None:
        self.embedding = embedding
        self.store = store
        self.default_tenant = default_tenant
        self.deadline_s = deadline_s
        self.detection = detection
        self.classification = classification
        self.image_settings = image_settings or ImageSettings()
        self.detection_settings = detection_settings or DetectionSettings()

    # --- Search ---------------------------------------------------------------------------------

    @rpc_method(SERVICE_NAME)
    def Search(self, request: search_pb2.SearchRequest, context) -> search_pb2.SearchResponse:  # noqa: N802
        """See protos/visearch/v1/search.proto. Raises INVALID_ARGUMENT, NOT_FOUND or UNAVAILABLE."""
        start = time.perf_counter()
        top_k, tenant, flt = self._window(request.top_k, request.offset), request.tenant or self.default_tenant, _filter(request.filter)
        window = request.offset + top_k
        query = request.WhichOneof("query")
        if query == "image":
            candidates = self._image_routes(request.image, request, tenant, window, flt)
        elif query == "text":
            if not request.text.strip():
                raise InvalidEventError("text query is empty", reason="empty_query")
            candidates = self._route({}, "joint", "text", self._embed_text(request.text), tenant, window, flt)
        elif query == "image_id":
            row = self._stored(tenant, request.image_id)
            flt.exclude_image_ids.append(request.image_id)
            vector = np.asarray(row["vector"], dtype=np.float32)
            candidates = self._route({}, "image", "visual", vector, tenant, window, flt)
            if request.region_mode == Mode.REGION_MODE_AUTO:
                self._route(candidates, "region", "region", vector, tenant, window, flt)
        elif query == "colour":
            candidates = self._route({}, "colour", "colour", self._colour_vector(request.colour, tenant), tenant, window, flt)
        else:
            raise InvalidEventError("set one of image, text, image_id or colour", reason="empty_query")
        hits = _ranked(candidates)[request.offset : window]
        took = (time.perf_counter() - start) * 1000
        log.info("search", query=query, tenant=tenant, top_k=top_k, hits=len(hits), took_ms=round(took, 2))
        return search_pb2.SearchResponse(hits=[_hit(c) for c in hits], took_ms=took)

    def _image_routes(self, image: common_pb2.Image, request, tenant: str, window: int, flt: SearchFilter) -> dict:
        if request.HasField("region"):
            vector = self._embed_regions(image, [request.region])[0]
            query_box = request.region
        else:
            vector, query_box = self._embed_image(image), None
        candidates: dict[str, Candidate] = {}
        if request.region_mode != Mode.REGION_MODE_QUERY_OBJECTS:
            self._route(candidates, "image", "visual", vector, tenant, window, flt)
        if request.region_mode == Mode.REGION_MODE_AUTO:
            self._route(candidates, "region", "region", vector, tenant, window, flt, query_box=query_box)
        elif request.region_mode == Mode.REGION_MODE_QUERY_OBJECTS:
            objects = self._query_objects(image)
            if not objects:  # nothing detected: fall back to the whole image against the regions
                return self._route(candidates, "region", "region", vector, tenant, window, flt)
            vectors = self._embed_regions(image, [d.box for d in objects])
            for detection, vec in zip(objects, vectors):
                self._route(candidates, "region", "region", vec, tenant, window, flt, query_box=detection.box,
                            query_label=detection.label)
        return candidates

    def _route(self, candidates: dict, space: str, factor: str, vector: np.ndarray, tenant: str, window: int,
               flt: SearchFilter, query_box: common_pb2.Box | None = None, query_label: str = "") -> dict:
        """Search one collection and merge its hits into ``candidates`` (image id -> Candidate)."""
        # Several regions of one image can be near the query: ask for more so `window` images remain.
        limit = min(window * (3 if space == "region" else 1), MAX_WINDOW)
        for stored in self.store.search(space, vector, tenant=tenant, top_k=limit, filter=flt):
            candidate = candidates.setdefault(stored.image_id, Candidate(stored))
            region = None
            if space == "region":
                x1, y1, x2, y2 = stored.fields["box"]
                region = search_pb2.RegionMatch(index=int(stored.fields["region_index"]), label=stored.fields["label"],
                                                box=common_pb2.Box(x1=x1, y1=y1, x2=x2, y2=y2), query_label=query_label)
                if query_box is not None:
                    region.query_box.CopyFrom(query_box)
            candidate.offer(factor, stored.score, region)
        return candidates

    def _query_objects(self, image: common_pb2.Image) -> list[common_pb2.Detection]:
        if self.detection is None:
            raise VisearchError("REGION_MODE_QUERY_OBJECTS needs the detection service (VISEARCH_DETECTION_ADDR)",
                                reason="detection_unavailable")
        response = self._call(self.detection, "Detect", detection_pb2.DetectRequest(images=[image]))
        result = response.results[0]
        keep = select_regions(result.detections, result.width, result.height, self.detection_settings)
        return [result.detections[i] for i in keep]

    def _colour_vector(self, query: search_pb2.ColourQuery, tenant: str) -> np.ndarray:
        source = query.WhichOneof("source")
        if source == "palette":
            if not query.palette.colours:
                raise InvalidEventError("the palette has no colours", reason="empty_query")
            return palette_descriptor([(c.colour, c.weight or 1.0) for c in query.palette.colours])
        if source == "image":
            return colour_descriptor(decode_image(image_bytes(query.image, self.image_settings), self.image_settings))
        if source == "image_id":
            row = self.store.get(tenant, query.image_id, "colour")
            if row is None:
                raise NotFoundError(f"image {query.image_id!r} has no colour descriptor for tenant {tenant!r}")
            return np.asarray(row["vector"], dtype=np.float32)
        raise InvalidEventError("set the colour query's palette, image or image_id", reason="empty_query")

    # --- SimilarTo ------------------------------------------------------------------------------

    @rpc_method(SERVICE_NAME)
    def SimilarTo(self, request: search_pb2.SimilarToRequest, context) -> search_pb2.SearchResponse:  # noqa: N802
        """More like an indexed or given image; with ``exact_only``, near-duplicates and exact matches only,
        verified by pHash distance and ORB + RANSAC inliers (factor "exact"), best verified first."""
        start = time.perf_counter()
        top_k, tenant, flt = self._window(request.top_k, request.offset), request.tenant or self.default_tenant, _filter(request.filter)
        window = request.offset + top_k
        item = request.WhichOneof("item")
        if item == "image_id":
            row = self._stored(tenant, request.image_id)
            flt.exclude_image_ids.append(request.image_id)
            vector, phash = np.asarray(row["vector"], dtype=np.float32), int(row.get("phash") or 0)
            query_image = self._try_load(row.get("uri", "")) if request.exact_only else None
        elif item == "image":
            query_image = decode_image(image_bytes(request.image, self.image_settings), self.image_settings)
            vector, phash = self._embed_image(request.image), perceptual_hash(query_image)
        else:
            raise InvalidEventError("set image_id or image", reason="empty_query")
        limit = max(window, EXACT_CANDIDATES) if request.exact_only else window
        candidates = self._route({}, "image", "visual", vector, tenant, limit, flt)
        if request.exact_only:
            candidates = self._verify_exact(candidates, query_image, phash)
        hits = _ranked(candidates)[request.offset : window]
        return search_pb2.SearchResponse(hits=[_hit(c) for c in hits], took_ms=(time.perf_counter() - start) * 1000)

    def _verify_exact(self, candidates: dict, query_image: Image.Image | None, phash: int) -> dict:
        """Keep the candidates that are near-duplicates (pHash) or verified exact matches (ORB + RANSAC);
        the "exact" factor (inlier ratio, or 1 - pHash bits / 64 without pixels) orders them."""
        verified = {}
        query_features = local_features(query_image) if query_image is not None else None  # once, not per pair
        for image_id, c in candidates.items():
            distance = hash_distance(phash, int(c.stored.fields.get("phash") or 0)) if phash else 64
            near = distance <= NEAR_DUPLICATE_MAX_DISTANCE
            exact, ratio = False, 0.0
            other = self._try_load(c.stored.fields.get("uri", "")) if query_image is not None else None
            if other is not None:
                match = verify_match(query_features, other)
                exact, ratio = is_exact_match(match), match.inlier_ratio
            if near or exact:
                c.factors["exact"] = ratio if other is not None else 1.0 - distance / 64.0
                c.score, c.best = 1.0 + c.factors["exact"], "exact"  # verified matches rank above unverified ones
                verified[image_id] = c
        return verified

    def _try_load(self, uri: str) -> Image.Image | None:
        """The image at ``uri`` for verification, or None when there is none or it cannot be read."""
        if not uri:
            return None
        try:
            return decode_image(read_uri(uri, self.image_settings), self.image_settings)
        except VisearchError as exc:
            log.info("exact_match_unreadable", uri=uri, reason=exc.reason)
            return None

    # --- Tag ------------------------------------------------------------------------------------

    @rpc_method(SERVICE_NAME)
    def Tag(self, request: search_pb2.TagRequest, context) -> search_pb2.TagResponse:  # noqa: N802
        """Open-ended tags from the linked text of the visual neighbours, beside the model's tags."""
        neighbours = request.neighbours or DEFAULT_TAG_NEIGHBOURS
        top_n = request.top_n or DEFAULT_TAG_PHRASES
        if not 1 <= neighbours <= MAX_TAG_NEIGHBOURS or not 1 <= top_n <= MAX_TAG_PHRASES:
            raise InvalidEventError(f"neighbours must be in 1..{MAX_TAG_NEIGHBOURS}, top_n in 1..{MAX_TAG_PHRASES}",
                                    reason="bad_top_k")
        tenant, flt = request.tenant or self.default_tenant, SearchFilter()
        item = request.WhichOneof("item")
        response = search_pb2.TagResponse()
        if item == "image_id":
            row = self._stored(tenant, request.image_id)
            flt.exclude_image_ids.append(request.image_id)
            vector = np.asarray(row["vector"], dtype=np.float32)
            response.model_tags.extend(_attributes(row.get("attributes", "")))
        elif item == "image":
            vector = self._embed_image(request.image)
            if self.classification is not None:
                result = self._call(self.classification, "Classify", classification_pb2.ClassifyRequest(images=[request.image]))
                response.model_tags.extend(result.results[0].attributes)
        else:
            raise InvalidEventError("set image_id or image", reason="empty_query")
        hits = self.store.search("image", vector, tenant=tenant, top_k=neighbours, filter=flt)
        texts = [(h.score, [h.fields.get(f, "") for f in ("title", "description", "ocr_text") if h.fields.get(f)])
                 for h in hits]
        for phrase, score in aggregate_phrases(texts, top_n=top_n):
            response.phrases.add(name="phrase", value=phrase, score=score)
        response.neighbours_used = len(hits)
        return response

    # --- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _window(top_k: int, offset: int) -> int:
        top_k = top_k or DEFAULT_TOP_K
        if not 1 <= top_k <= MAX_TOP_K:
            raise InvalidEventError(f"top_k must be in 1..{MAX_TOP_K}, got {top_k}", reason="bad_top_k")
        if offset < 0 or offset + top_k > MAX_WINDOW:
            raise InvalidEventError(f"offset must be >= 0 and offset + top_k <= {MAX_WINDOW}", reason="bad_offset")
        return top_k

    def _stored(self, tenant: str, image_id: str) -> dict:
        row = self.store.get(tenant, image_id, "image")
        if row is None:
            raise NotFoundError(f"image {image_id!r} is not indexed for tenant {tenant!r}")
        return row

    def _call(self, stub, method: str, request):
        try:
            return getattr(stub, method)(request, timeout=self.deadline_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, method) from exc

    def _embed_image(self, image) -> np.ndarray:
        response = self._call(self.embedding, "EmbedImage", embedding_pb2.EmbedImageRequest(images=[image]))
        return np.asarray(response.embeddings[0].image.values, dtype=np.float32)

    def _embed_regions(self, image, boxes) -> list[np.ndarray]:
        response = self._call(self.embedding, "EmbedRegions", embedding_pb2.EmbedRegionsRequest(image=image, boxes=boxes))
        return [np.asarray(v.values, dtype=np.float32) for v in response.vectors]

    def _embed_text(self, text: str) -> np.ndarray:
        response = self._call(self.embedding, "EmbedText", embedding_pb2.EmbedTextRequest(texts=[text]))
        return np.asarray(response.vectors[0].values, dtype=np.float32)


def _filter(f: search_pb2.Filter) -> SearchFilter:
    return SearchFilter(
        categories=list(f.categories), brands=list(f.brands),
        in_stock=f.in_stock if f.HasField("in_stock") else None,
        price_min=f.price_min if f.HasField("price_min") else None,
        price_max=f.price_max if f.HasField("price_max") else None,
        safe=f.safe if f.HasField("safe") else None,
    )


def _ranked(candidates: dict) -> list[Candidate]:
    return sorted(candidates.values(), key=lambda c: (-c.score, c.stored.image_id))


def _attributes(text: str) -> list[common_pb2.Attribute]:
    import json

    return [common_pb2.Attribute(name=n, value=v, score=s) for n, v, s in (json.loads(text) if text else [])]


def _hit(candidate: Candidate) -> search_pb2.Hit:
    fields = candidate.stored.fields
    hit = search_pb2.Hit(
        image_id=candidate.stored.image_id, score=candidate.score, title=fields.get("title", ""),
        category=fields.get("category", ""), brand=fields.get("brand", ""), price=fields.get("price", 0.0),
        in_stock=fields.get("in_stock", False), uri=fields.get("uri", ""),
        factors=[search_pb2.FactorScore(name=name, value=value, contribution=value if name == candidate.best else 0.0)
                 for name, value in candidate.factors.items()],
        duplicate_of=fields.get("duplicate_of", ""), safe=fields.get("safe", True),
        tags=[t for t in (fields.get("tags") or "").split(";") if t], taxonomy=fields.get("taxonomy", ""),
        ocr_text=fields.get("ocr_text", ""),
    )
    if candidate.region is not None:
        hit.region.CopyFrom(candidate.region)
    return hit
