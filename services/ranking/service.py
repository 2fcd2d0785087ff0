"""Ranking service: the public search API (Search, SimilarTo, Tag).

Queries are understood by the recognition services (over gRPC, or in-process in embedded mode, through
the same stub interface and with deadlines): the embedding service embeds query images, regions and
texts; the detection service finds the objects of a query image. Candidates come from Milvus by the
query's routes (global visual vectors, region vectors, the joint image-text space, colour
descriptors), filters applied in Milvus; every hit carries its factor scores. Exact-match requests are
verified with perceptual hashes and ORB keypoints + RANSAC. Hits are ordered by the blended ranker
(services/ranking/ranker.py): a ranking profile or the learned ranker, overridable per request.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import numpy as np
from PIL import Image

from visearch.shared.config import DetectionSettings, ImageSettings, RankingSettings
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
from visearch.shared.metrics import FEEDBACK_EVENTS
from visearch.shared.store import OUTPUT_FIELDS, MilvusStore, SearchFilter, StoredHit
from visearch.shared.transport import HEADER_SCHEMA, Transport, feedback_topic
from visearch.services.classification.colour import colour_descriptor, palette_descriptor
from visearch.services.embedding.service import select_regions
from visearch.services.ranking.factors import (
    TAG_ATTRIBUTES,
    TAXONOMY_SEPARATOR,
    freshness,
    hit_tags,
    phash_similarity,
    tag_overlap,
    taxonomy_agreement,
    text_tags,
)
from visearch.services.ranking.open_tags import aggregate_phrases
from visearch.services.ranking.ranker import FACTORS, RankedHit, Ranker, RankerRegistry
from visearch.services.ranking.text_index import TextIndex
from visearch.v1 import (
    classification_pb2,
    common_pb2,
    detection_pb2,
    embedding_pb2,
    events_pb2,
    ocr_pb2,
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
FEEDBACK_SCHEMA = "visearch.v1.FeedbackEvent"
EXACT_RANKER = Ranker("exact", {"exact": 1.0})  # SimilarTo(exact_only): how well a match verifies decides
# What a route reads with each candidate of a rerank window: the fields the factors need. The hits of the
# returned page read the rest (title, uri, ...) once ranked: on Milvus Lite a top-100 search reading every
# field took 26 ms p50, reading these 17.7 ms, and the page's read ~4 ms (docs/performance.md).
FACTOR_FIELDS = ("image_id", "tags", "attributes", "taxonomy", "phash", "in_stock", "updated_ms")
# The query part each factor compares a candidate with; factors absent here need only the candidate.
_FACTOR_NEEDS = {"visual": "visual", "region": "visual", "text": "joint", "bm25": "text", "tags": "tags",
                 "taxonomy": "taxonomy", "colour": "colour", "phash": "phash"}


@dataclass
class Candidate:
    """A hit being assembled from one or more routes: its raw factor values and the matched region."""

    stored: StoredHit
    factors: dict[str, float] = field(default_factory=dict)
    region: search_pb2.RegionMatch | None = None

    def offer(self, factor: str, value: float, region: search_pb2.RegionMatch | None = None) -> None:
        """Record a route's similarity; each factor keeps its best value (and "region" its best region)."""
        if value > self.factors.get(factor, -2.0):
            self.factors[factor] = value
            if region is not None:
                self.region = region


@dataclass(frozen=True)
class Route:
    """One candidate source: an ANN query of ``vector`` in collection ``space`` whose cosine similarity
    becomes factor ``factor``; region routes may name the query box and label they came from."""

    space: str
    factor: str
    vector: np.ndarray
    query_box: common_pb2.Box | None = None
    query_label: str = ""


@dataclass
class Query:
    """What a request asks for, as the factors need it (each part optional).

    ``visual`` float32 [1280] and ``joint`` [384] are unit vectors; ``colour`` the colour descriptor;
    ``text`` the query text (or the query image's OCR text), ``tags`` tag -> score in [0, 1],
    ``taxonomy`` a path "a > b > c", ``phash`` a 64-bit perceptual hash (0: unknown).
    """

    kind: str
    visual: np.ndarray | None = None
    joint: np.ndarray | None = None
    colour: np.ndarray | None = None
    text: str = ""
    tags: dict[str, float] = field(default_factory=dict)
    taxonomy: str = ""
    phash: int = 0

    def summary(self) -> str:
        """What was asked, for the feedback log: "text:red dress", "image", "image_id:<id>"."""
        return f"text:{self.text}"[:200] if self.kind == "text" else self.kind

    def scores(self, factor: str) -> bool:
        """True when this query can give a candidate a value of ``factor`` (a text factor needs a query
        text vector, ...); factors of the candidate alone (in_stock, freshness) always can."""
        if factor not in _FACTOR_NEEDS:
            return True
        value = getattr(self, _FACTOR_NEEDS[factor])
        return isinstance(value, np.ndarray) or bool(value)  # None, "", {} and a 0 pHash: nothing to compare


class SearchService(search_pb2_grpc.SearchServiceServicer):
    """Search by image, region, text, colour or indexed image id; similar items, exact matches, in-stock
    alternatives; open tags; feedback for learning to rank.

    Candidates come from several routes (global visual ANN, region ANN, joint-space vector, BM25 over
    linked text + OCR, colour), filters applied in Milvus; each candidate then gets every factor the
    ranker weighs (vectors fetched from Milvus for the candidates a route did not find), and the ranker
    (a profile, or the learned ranker) orders them; every hit carries its factor values and contributions.

    Args:
        embedding: EmbeddingService stub (``EmbedImage``/``EmbedRegions``/``EmbedText`` taking ``timeout``).
        store: the Milvus store.
        detection: DetectionService stub, for REGION_MODE_QUERY_OBJECTS (None: that mode is UNAVAILABLE).
        classification: ClassificationService stub: tags and taxonomy of a query image (query understanding,
            ``Tag``); None: image queries have no tag/taxonomy factor.
        ocr: OcrService stub: the query image's text for the text factors; None: no OCR of queries.
        default_tenant: tenant used when the request names none.
        deadline_s: deadline of each call to another service, seconds.
        ranking: ranker settings (profiles, learned ranker folder, depth, query understanding).
        feedback: a transport (Kafka or in-process) for the feedback topic; None: Feedback is UNAVAILABLE
            and no impressions are logged.
    """

    def __init__(self, embedding, store: MilvusStore, default_tenant: str = "default", deadline_s: float = 10.0,
                 detection=None, classification=None, image_settings: ImageSettings | None = None,
                 detection_settings: DetectionSettings | None = None, ocr=None,
                 ranking: RankingSettings | None = None, feedback: Transport | None = None,
                 feedback_topic_name: str = feedback_topic()) -> None:
        self.embedding = embedding
        self.store = store
        self.default_tenant = default_tenant
        self.deadline_s = deadline_s
        self.detection = detection
        self.classification = classification
        self.ocr = ocr
        self.image_settings = image_settings or ImageSettings()
        self.detection_settings = detection_settings or DetectionSettings()
        self.settings = ranking or RankingSettings()
        self.rankers = RankerRegistry(self.settings.profiles, self.settings.profile, self.settings.tenant_profiles,
                                      self.settings.learned_dir, self.settings.reload_interval_s, self.settings.rrf_k)
        self.text_index = TextIndex(store.text_rows, self.settings.text_index_refresh_s)
        self.feedback = feedback
        self.feedback_topic = feedback_topic_name
        self._feedback_lock = threading.Lock()
        self._route_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="route")
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="understand")  # a Kafka transport is not thread-safe; gRPC handlers are threads

    # --- Search ---------------------------------------------------------------------------------

    @rpc_method(SERVICE_NAME)
    def Search(self, request: search_pb2.SearchRequest, context) -> search_pb2.SearchResponse:  # noqa: N802
        """See protos/visearch/v1/search.proto. Raises INVALID_ARGUMENT, NOT_FOUND or UNAVAILABLE."""
        start = time.perf_counter()
        top_k, tenant, flt = self._window(request.top_k, request.offset), request.tenant or self.default_tenant, _filter(request.filter)
        window = request.offset + top_k
        kind = request.WhichOneof("query")
        ranker = self._ranker(request.ranking, tenant, "colour" if kind == "colour" else None)
        understand = request.understand_query if request.HasField("understand_query") else self.settings.understand_query
        if kind == "image":
            query, routes = self._image_query(request.image, request, ranker, understand)
        elif kind == "text":
            if not request.text.strip():
                raise InvalidEventError("text query is empty", reason="empty_query")
            query = Query("text", joint=self._embed_text(request.text), text=request.text, tags=text_tags(request.text))
            routes = [Route("joint", "text", query.joint)]
        elif kind == "image_id":
            row = self._stored(tenant, request.image_id)
            flt.exclude_image_ids.append(request.image_id)
            query = self._stored_query(tenant, row)
            routes = [Route("image", "visual", query.visual)]
            if request.region_mode == Mode.REGION_MODE_AUTO and ranker.active("region"):
                routes.append(Route("region", "region", query.visual))
        elif kind == "colour":
            query = Query("colour", colour=self._colour_vector(request.colour, tenant))
            routes = [Route("colour", "colour", query.colour)]
        else:
            raise InvalidEventError("set one of image, text, image_id or colour", reason="empty_query")
        depth, fields = self._fetch_plan(window, ranker, query, routes)
        candidates = self._run_routes(routes, tenant, depth, flt, fields)
        if query.text and ranker.active("bm25"):
            self._bm25_route(candidates, query, ranker, tenant, depth, flt)
        return self._respond(candidates, query, ranker, tenant, request.offset, window, start)

    def _ranker(self, profile: search_pb2.RankingProfile, tenant: str, default: str | None = None) -> Ranker:
        fusion = {search_pb2.FUSION_BLEND: "blend", search_pb2.FUSION_RRF: "rrf"}.get(profile.fusion)
        return self.rankers.resolve(tenant, profile.name, dict(profile.weights), fusion, default)

    def _fetch_plan(self, window: int, ranker: Ranker, query: Query, routes: list[Route]) -> tuple[int, tuple[str, ...]]:
        """How many candidates each route fetches, and with which fields.

        The rerank window (``rerank_depth``, at least the page) with the factors' fields when other factors
        can reorder the candidates; only the page, with every field (no second read), when the ranker weighs
        nothing but the one route's own similarity (visual_only on an image or text query: the ANN order is
        the final order).
        """
        weighed = {f for f in FACTORS if ranker.active(f) and query.scores(f)}
        if len(routes) == 1 and weighed == {routes[0].factor} and ranker.weights[routes[0].factor] > 0:
            return window, tuple(OUTPUT_FIELDS)
        return min(max(window, self.settings.rerank_depth), MAX_WINDOW), FACTOR_FIELDS

    def _respond(self, candidates: dict, query: Query, ranker: Ranker, tenant: str, offset: int, window: int,
                 start: float) -> search_pb2.SearchResponse:
        """Score the candidates by every active factor, rank them, read the page's fields, log impressions."""
        self._rescore(candidates, query, ranker, tenant)
        ranked = ranker.rank({i: c.factors for i, c in candidates.items()})[offset:window]
        self._read_page_fields(candidates, [r.image_id for r in ranked], tenant)
        response = search_pb2.SearchResponse(hits=[_hit(candidates[r.image_id], r) for r in ranked],
                                             query_id=uuid.uuid4().hex, ranker=ranker.name)
        response.took_ms = (time.perf_counter() - start) * 1000
        self._log_impressions(response, tenant, query, offset)
        log.info("search", query=query.kind, tenant=tenant, ranker=ranker.name, candidates=len(candidates),
                 hits=len(response.hits), took_ms=round(response.took_ms, 2))
        return response

    def _image_query(self, image: common_pb2.Image, request, ranker: Ranker, understand: bool,
                     ) -> tuple[Query, list[Route]]:
        """The query of an image request (its embedding, and with ``understand`` its tags, taxonomy, text,
        colours and pHash) and its candidate routes by region mode."""
        # Query understanding (OCR, classification) runs concurrently with the embedding: the three
        # services' latencies overlap instead of adding up.
        pending = self._understand_async(image, ranker) if understand else {}
        if request.HasField("region"):
            vector = self._embed_regions(image, [request.region])[0]
            query_box = request.region
        else:
            vector, query_box = self._embed_image(image), None
        query = Query("image", visual=vector)
        self._apply_understanding(query, pending, ranker)
        routes: list[Route] = []
        if request.region_mode != Mode.REGION_MODE_QUERY_OBJECTS:
            routes.append(Route("image", "visual", vector))
        if request.region_mode == Mode.REGION_MODE_AUTO and ranker.active("region"):
            routes.append(Route("region", "region", vector, query_box=query_box))
        elif request.region_mode == Mode.REGION_MODE_QUERY_OBJECTS:
            objects = self._query_objects(image)
            if not objects:  # nothing detected: fall back to the whole image against the regions
                routes.append(Route("region", "region", vector))
            else:
                vectors = self._embed_regions(image, [d.box for d in objects])
                routes += [Route("region", "region", vec, query_box=detection.box, query_label=detection.label)
                           for detection, vec in zip(objects, vectors)]
        return query, routes

    def _understand_async(self, image: common_pb2.Image, ranker: Ranker) -> dict[str, Future]:
        """Start query understanding when a factor it feeds is weighed: Classify (tags, taxonomy, colours,
        pHash, and the text its OCR call read, for BM25), or without a classification service, OCR alone."""
        pending = {}
        wants_class = any(ranker.active(f) for f in ("tags", "taxonomy", "colour", "phash"))
        if self.classification is not None and (wants_class or ranker.active("bm25")):
            # Classify reads the text too (it asks the OCR service) and returns it: one OCR pass, not two.
            pending["classification"] = self._pool.submit(
                self._call, self.classification, "Classify", classification_pb2.ClassifyRequest(images=[image]))
        elif self.ocr is not None and ranker.active("bm25"):
            pending["ocr"] = self._pool.submit(self._call, self.ocr, "Read", ocr_pb2.ReadRequest(images=[image]))
        return pending

    def _apply_understanding(self, query: Query, pending: dict[str, Future], ranker: Ranker) -> None:
        """Query understanding: the query image's OCR text feeds BM25, its model tags and taxonomy path the
        tag and taxonomy factors, its colours and perceptual hash theirs.

        An understanding service that fails (down, past its deadline) costs its factors, not the search:
        logged as ``query_understanding_skipped`` (the embedding already refused a bad image).
        """
        results = {}
        for name, future in pending.items():
            try:
                results[name] = future.result().results[0]
            except VisearchError as exc:
                log.warning("query_understanding_skipped", service=name, reason=exc.reason, error=str(exc))
        if "ocr" in results or "classification" in results:
            # The words feed BM25 (a label or title in the photo matches the item's linked text); they do
            # not become a joint-space query: overlaid text ("SUMMER SALE -50%") says little about what
            # the image shows, and as a "text" factor it outweighed the picture (docs/quality.md).
            text = results["ocr"].text if "ocr" in results else results["classification"].ocr_text
            query.text = " ".join(text.split())
        if "classification" in results:
            result = results["classification"]
            query.tags = {a.value.lower(): a.score for a in result.attributes if a.name in TAG_ATTRIBUTES and a.value}
            query.taxonomy = TAXONOMY_SEPARATOR.join(node.name for node in result.taxonomy)
            if result.colour_descriptor.values:
                query.colour = np.asarray(result.colour_descriptor.values, dtype=np.float32)
            query.phash = int(result.phash)

    def _stored_query(self, tenant: str, row: dict) -> Query:
        """The query an indexed item makes ("more like this", alternatives): its vector, joint vector,
        colour descriptor, tags, taxonomy and perceptual hash as stored."""
        image_id = row["image_id"]
        joint = self.store.vectors("joint", tenant, [image_id]).get(image_id)
        colour = self.store.vectors("colour", tenant, [image_id]).get(image_id)
        return Query("image_id", visual=np.asarray(row["vector"], dtype=np.float32), joint=joint, colour=colour,
                     tags=hit_tags(row), taxonomy=row.get("taxonomy", ""), phash=int(row.get("phash") or 0))

    def _run_routes(self, routes: list[Route], tenant: str, depth: int, flt: SearchFilter,
                    fields: tuple[str, ...]) -> dict[str, Candidate]:
        """Search the collection of each route and merge the hits into candidates (image id -> Candidate),
        in route order (so the first route that found an image provides its fields).

        Candidates carry ``fields`` (:meth:`_fetch_plan`); :meth:`_respond` reads the rest for the returned
        page. On a Milvus server the routes' queries run concurrently: the search waits for the
        slowest one, not for their sum. Milvus Lite serialises them.
        """
        def search(route: Route) -> list[StoredHit]:
            # Several regions of one image can be near the query: ask for more so `depth` images remain.
            limit = min(depth * (3 if route.space == "region" else 1), MAX_WINDOW)
            return self.store.search(route.space, route.vector, tenant=tenant, top_k=limit, filter=flt,
                                     output_fields=fields)

        if self.store.concurrent and len(routes) > 1:
            found = list(self._route_pool.map(search, routes))
        else:
            found = [search(route) for route in routes]
        candidates: dict[str, Candidate] = {}
        for route, hits in zip(routes, found):
            for stored in hits:
                candidate = candidates.setdefault(stored.image_id, Candidate(stored))
                region = None
                if route.space == "region":
                    x1, y1, x2, y2 = stored.fields["box"]
                    region = search_pb2.RegionMatch(index=int(stored.fields["region_index"]), label=stored.fields["label"],
                                                    box=common_pb2.Box(x1=x1, y1=y1, x2=x2, y2=y2),
                                                    query_label=route.query_label)
                    if route.query_box is not None:
                        region.query_box.CopyFrom(route.query_box)
                candidate.offer(route.factor, stored.score, region)
        return candidates

    def _bm25_route(self, candidates: dict, query: Query, ranker: Ranker, tenant: str, depth: int,
                    flt: SearchFilter) -> None:
        """Add the best BM25 matches of the query text (their rows read from Milvus, so filters still apply).

        The rows come from the joint collection with their joint vectors when the text factor is weighed:
        the new candidates' dense text similarity needs no second read.
        """
        found = [i for i, _ in self.text_index.search(tenant, query.text, depth) if i not in candidates]
        with_text = query.joint is not None and ranker.active("text")
        for stored in self.store.rows(tenant, found, flt, space="joint", with_vector=with_text,
                                      output_fields=FACTOR_FIELDS):
            candidate = candidates[stored.image_id] = Candidate(stored)
            if with_text:
                candidate.factors["text"] = float(np.dot(stored.fields.pop("vector"), query.joint))

    def _read_page_fields(self, candidates: dict, image_ids: list[str], tenant: str) -> None:
        """Complete the page's candidates with every stored field (title, uri, ...) in one query: the routes
        read only the factors' fields of the whole rerank window."""
        partial = [i for i in image_ids if not candidates[i].stored.fields.keys() >= set(OUTPUT_FIELDS)]
        for stored in self.store.rows(tenant, partial) if partial else []:
            candidates[stored.image_id].stored.fields.update(stored.fields)

    def _rescore(self, candidates: dict, query: Query, ranker: Ranker, tenant: str) -> None:
        """Give every candidate each factor the ranker weighs and the query supports."""
        if not candidates:
            return
        ids = list(candidates)
        for factor, space, vector in (("visual", "image", query.visual), ("text", "joint", query.joint),
                                      ("colour", "colour", query.colour)):
            if vector is None or not ranker.active(factor):
                continue
            missing = [i for i in ids if factor not in candidates[i].factors]
            for image_id, stored in self.store.vectors(space, tenant, missing).items():
                candidates[image_id].factors[factor] = float(np.dot(stored, vector))
        if query.text and ranker.active("bm25"):
            index_ids, scores = self.text_index.scores(tenant, query.text)
            position = {i: n for n, i in enumerate(index_ids)}
            raw = {i: float(scores[position[i]]) if i in position else 0.0 for i in ids}
            best = max(raw.values())
            for i in ids:
                candidates[i].factors["bm25"] = raw[i] / best if best > 0 else 0.0
        now_ms = int(time.time() * 1000)
        for c in candidates.values():
            fields = c.stored.fields
            if query.tags and ranker.active("tags"):
                c.factors["tags"] = tag_overlap(query.tags, hit_tags(fields))
            if query.taxonomy and ranker.active("taxonomy"):
                c.factors["taxonomy"] = taxonomy_agreement(query.taxonomy, fields.get("taxonomy", ""))
            if query.phash and ranker.active("phash"):
                c.factors["phash"] = phash_similarity(query.phash, int(fields.get("phash") or 0))
            if ranker.active("in_stock"):
                c.factors["in_stock"] = 1.0 if fields.get("in_stock", False) else 0.0
            if ranker.active("freshness"):
                c.factors["freshness"] = freshness(int(fields.get("updated_ms") or 0), now_ms,
                                                   self.settings.freshness_half_life_days)

    def _log_impressions(self, response: search_pb2.SearchResponse, tenant: str, query: Query, offset: int) -> None:
        """One ACTION_IMPRESSION FeedbackEvent per served hit, with its factor values (the training data of
        `visearch rank fit`). A failing feedback topic never fails a search: it is logged and counted."""
        if self.feedback is None or not self.settings.feedback_impressions or not response.hits:
            return
        events = []
        for position, hit in enumerate(response.hits, start=offset):
            event = events_pb2.FeedbackEvent(
                query_id=response.query_id, tenant=tenant, image_id=hit.image_id, position=position,
                action=events_pb2.FeedbackEvent.ACTION_IMPRESSION, factors={f.name: f.value for f in hit.factors},
                ranker=response.ranker, query=query.summary())
            event.event_time.GetCurrentTime()
            events.append(event.SerializeToString())
        try:
            with self._feedback_lock:
                for value in events:
                    self.feedback.produce(self.feedback_topic, response.query_id.encode(), value,
                                          {HEADER_SCHEMA: FEEDBACK_SCHEMA})
            FEEDBACK_EVENTS.labels(action="impression").inc(len(events))
        except Exception as exc:  # noqa: BLE001 (any transport failure: searching matters more than logging)
            log.warning("impressions_not_logged", query_id=response.query_id, error=str(exc))

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

    # --- Alternatives and Feedback --------------------------------------------------------------

    @rpc_method(SERVICE_NAME)
    def Alternatives(self, request: search_pb2.AlternativesRequest, context) -> search_pb2.SearchResponse:  # noqa: N802
        """In-stock items of the item's taxonomy node (its category when it has no taxonomy path), ranked by
        the profile over the item's own query (visually closest first with the visual factor)."""
        start = time.perf_counter()
        if not request.image_id:
            raise InvalidEventError("set image_id", reason="empty_query")
        top_k, tenant, flt = self._window(request.top_k, request.offset), request.tenant or self.default_tenant, _filter(request.filter)
        window = request.offset + top_k
        row = self._stored(tenant, request.image_id)
        flt.in_stock = True
        flt.exclude_image_ids.append(request.image_id)
        if row.get("taxonomy"):
            flt.taxonomy = row["taxonomy"]
        elif row.get("category"):
            flt.categories = [row["category"]]
        else:
            raise InvalidEventError(f"image {request.image_id!r} has neither a taxonomy path nor a category to stay in",
                                    reason="no_taxonomy")
        query = self._stored_query(tenant, row)
        ranker = self._ranker(request.ranking, tenant)
        routes = [Route("image", "visual", query.visual)]
        depth, fields = self._fetch_plan(window, ranker, query, routes)
        candidates = self._run_routes(routes, tenant, depth, flt, fields)
        return self._respond(candidates, query, ranker, tenant, request.offset, window, start)

    @rpc_method(SERVICE_NAME)
    def Feedback(self, request: search_pb2.FeedbackRequest, context) -> search_pb2.FeedbackResponse:  # noqa: N802
        """Publish clicks, purchases (and client-side impressions) to the feedback topic, keyed by query_id.

        Raises INVALID_ARGUMENT for an event without query_id or image_id or with no action (nothing of the
        request is published then), UNAVAILABLE when no feedback topic is configured.
        """
        if self.feedback is None:
            raise VisearchError("no feedback topic is configured (set VISEARCH_KAFKA_BOOTSTRAP)", reason="feedback_unavailable")
        if not request.events:
            raise InvalidEventError("no feedback events", reason="empty_query")
        for n, event in enumerate(request.events):
            if not event.query_id or not event.image_id or event.action == events_pb2.FeedbackEvent.ACTION_UNSPECIFIED:
                raise InvalidEventError(f"event {n}: query_id, image_id and action are required", reason="bad_feedback")
        with self._feedback_lock:
            for event in request.events:
                event = events_pb2.FeedbackEvent.FromString(event.SerializeToString())
                event.tenant = event.tenant or self.default_tenant
                if not event.HasField("event_time"):
                    event.event_time.GetCurrentTime()
                self.feedback.produce(self.feedback_topic, event.query_id.encode(), event.SerializeToString(),
                                      {HEADER_SCHEMA: FEEDBACK_SCHEMA})
                action = events_pb2.FeedbackEvent.Action.Name(event.action).removeprefix("ACTION_").lower()
                FEEDBACK_EVENTS.labels(action=action).inc()
            self.feedback.flush()  # acknowledged by the broker before we say accepted
        return search_pb2.FeedbackResponse(accepted=len(request.events))

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
            query = self._stored_query(tenant, row)
            query_image = self._try_load(row.get("uri", "")) if request.exact_only else None
        elif item == "image":
            query_image = decode_image(image_bytes(request.image, self.image_settings), self.image_settings)
            query = Query("image", visual=self._embed_image(request.image), phash=perceptual_hash(query_image))
        else:
            raise InvalidEventError("set image_id or image", reason="empty_query")
        if request.exact_only:  # verified matches only, ordered by how well they verify
            candidates = self._run_routes([Route("image", "visual", query.visual)], tenant, max(window, EXACT_CANDIDATES),
                                          flt, fields=(*FACTOR_FIELDS, "uri"))
            candidates = self._verify_exact(candidates, query_image, query.phash)
            return self._respond(candidates, query, EXACT_RANKER, tenant, request.offset, window, start)
        ranker = self._ranker(request.ranking, tenant)
        if item == "image" and self.settings.understand_query:
            self._apply_understanding(query, self._understand_async(request.image, ranker), ranker)
        routes = [Route("image", "visual", query.visual)]
        depth, fields = self._fetch_plan(window, ranker, query, routes)
        candidates = self._run_routes(routes, tenant, depth, flt, fields)
        return self._respond(candidates, query, ranker, tenant, request.offset, window, start)

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


def _attributes(text: str) -> list[common_pb2.Attribute]:
    import json

    return [common_pb2.Attribute(name=n, value=v, score=s) for n, v, s in (json.loads(text) if text else [])]


def _hit(candidate: Candidate, ranked: RankedHit) -> search_pb2.Hit:
    """The API's hit: stored fields, score, and each factor's value and contribution (in FACTORS order)."""
    fields = candidate.stored.fields
    order = {name: n for n, name in enumerate(FACTORS)}
    hit = search_pb2.Hit(
        image_id=candidate.stored.image_id, score=ranked.score, title=fields.get("title", ""),
        category=fields.get("category", ""), brand=fields.get("brand", ""), price=fields.get("price", 0.0),
        in_stock=fields.get("in_stock", False), uri=fields.get("uri", ""),
        factors=[search_pb2.FactorScore(name=name, value=value, contribution=ranked.contributions.get(name, 0.0))
                 for name, value in sorted(candidate.factors.items(), key=lambda kv: order.get(kv[0], len(order)))],
        duplicate_of=fields.get("duplicate_of", ""), safe=fields.get("safe", True),
        tags=[t for t in (fields.get("tags") or "").split(";") if t], taxonomy=fields.get("taxonomy", ""),
        ocr_text=fields.get("ocr_text", ""),
    )
    if candidate.region is not None:
        hit.region.CopyFrom(candidate.region)
    return hit
