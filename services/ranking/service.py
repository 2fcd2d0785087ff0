"""Ranking service: the public search API (Search, SimilarTo, Alternatives, Tag, Feedback) as thin adapters.

The walk from a request to Milvus goes through named parts (docs/architecture.md, "The query path"):
the planner (``planner.py``: which signals, routes and fetch depth), query understanding
(``understanding.py``: the image's signals, cheapest first, each with a deadline), the query engine
(``engine.py``: retrieval routes in ``routes.py``, the factor registry in ``factor_registry.py``, the
ranker in ``ranker.py``), then the exact-match verifier (``exact.py``), the feedback log
(``feedback.py``) and the open tagger (``tagger.py``) for the RPCs that need them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np

from visearch.services.ranking.engine import QueryEngine
from visearch.services.ranking.exact import EXACT_CANDIDATES, ExactMatchVerifier
from visearch.services.ranking.factor_registry import route_fields
from visearch.services.ranking.factors import hit_tags, neighbour_object_tags
from visearch.services.ranking.feedback import FeedbackLog
from visearch.services.ranking.personalisation import Personaliser
from visearch.services.ranking.planner import FetchPlan, bm25_route, plan_routes, plan_signals, plan_text_fetch
from visearch.services.ranking.query import Query
from visearch.services.ranking.ranker import Ranker, RankerRegistry
from visearch.services.ranking.routes import MAX_WINDOW, AnnRoute, ColourRoute, JointRoute, RegionRoute, VisualRoute
from visearch.services.ranking.tagger import OpenTagger
from visearch.services.ranking.text_index import TextIndex
from visearch.services.ranking.understanding import QueryUnderstanding
from visearch.shared.colour import colour_descriptor, palette_descriptor
from visearch.shared.config import DetectionSettings, ImageSettings, PersonalisationSettings, RankingSettings
from visearch.shared.duplicates import perceptual_hash
from visearch.shared.errors import InvalidEventError, NotFoundError
from visearch.shared.grpcutil import InProcessStub, rpc_method
from visearch.shared.images import decode_image, image_bytes
from visearch.shared.logging import get_logger
from visearch.shared.profile_topic import ProfileBook, profiles_topic
from visearch.shared.store import MilvusStore, SearchFilter
from visearch.shared.transport import Transport, feedback_topic
from visearch.v1 import (
    classification_pb2_grpc,
    detection_pb2_grpc,
    embedding_pb2_grpc,
    ocr_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)

log = get_logger("ranking")

SERVICE_NAME = "visearch.v1.SearchService"
DEFAULT_TOP_K = 10
MAX_TOP_K = 1000
Mode = search_pb2.RegionMode
EXACT_RANKER = Ranker("exact", {"exact": 1.0})  # SimilarTo(exact_only): how well a match verifies decides


class SearchService(search_pb2_grpc.SearchServiceServicer):
    """Search by image, region, text, colour or indexed image id; similar items, exact matches, in-stock
    alternatives; open tags; feedback for learning to rank. Every hit carries its factor values and
    contributions; every image search says which query signals it used (SearchResponse.signals).

    Args:
        embedding: EmbeddingService stub (``EmbedImage``/``EmbedRegions``/``EmbedText`` taking ``timeout``).
        store: the Milvus store.
        default_tenant: tenant used when the request names none.
        deadline_s: gRPC deadline of each call to another service, seconds.
        detection: DetectionService stub, for REGION_MODE_QUERY_OBJECTS (None: that mode is UNAVAILABLE).
        classification: ClassificationService stub: taxonomy and concept tags of a query image, model tags of
            ``Tag`` (None: image queries have no taxonomy factor and only colour tags).
        image_settings, detection_settings: decoding limits; which objects become query regions.
        ocr: OcrService stub: the query image's text for BM25 (None: no OCR of queries).
        ranking: ranker settings (profiles, learned ranker folder, depth, query understanding and its budgets).
        feedback: a transport (Kafka or in-process) for the feedback topic; None: Feedback is UNAVAILABLE and
            no impressions are logged.
        profiles: the user profiles (a book fed by a tail of the profiles topic) and, for an in-process tail, its
            ``sync``; None: requests are not personalised and GetUserProfile/ForgetUser are UNAVAILABLE.
        personalisation: weights, evidence thresholds and caps of personalisation.
    """

    def __init__(
        self,
        embedding: embedding_pb2_grpc.EmbeddingServiceStub | InProcessStub,
        store: MilvusStore,
        default_tenant: str = "default",
        deadline_s: float = 10.0,
        detection: detection_pb2_grpc.DetectionServiceStub | InProcessStub | None = None,
        classification: classification_pb2_grpc.ClassificationServiceStub | InProcessStub | None = None,
        image_settings: ImageSettings | None = None,
        detection_settings: DetectionSettings | None = None,
        ocr: ocr_pb2_grpc.OcrServiceStub | InProcessStub | None = None,
        ranking: RankingSettings | None = None,
        feedback: Transport | None = None,
        feedback_topic_name: str = feedback_topic(),
        profiles: tuple[ProfileBook, Callable[[], None] | None] | None = None,
        personalisation: PersonalisationSettings | None = None,
        profiles_topic_name: str = profiles_topic(),
    ) -> None:
        self.store = store
        self.default_tenant = default_tenant
        self.image_settings = image_settings or ImageSettings()
        self.settings = ranking or RankingSettings()
        self.rankers = RankerRegistry(
            self.settings.profiles,
            self.settings.profile,
            self.settings.tenant_profiles,
            self.settings.learned_dir,
            self.settings.reload_interval_s,
            self.settings.rrf_k,
        )
        # Keyword search: Milvus's BM25 (unified layout), else an in-memory index per tenant (Milvus 2.3).
        self.text_index = None if store.full_text else TextIndex(store.text_rows, self.settings.text_index_refresh_s)
        # Query signals (and a search's early retrieval) run on one pool, the routes of a retrieval on another:
        # a task never waits on tasks queued behind it in its own pool.
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="search-signals")
        self._route_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="search-routes")
        self.understanding = QueryUnderstanding(
            embedding,
            classification,
            ocr,
            detection,
            self.settings,
            self.image_settings,
            detection_settings or DetectionSettings(),
            deadline_s,
            self._pool,
        )
        self.engine = QueryEngine(store, self.text_index, self.settings, self._route_pool)
        self.verifier = ExactMatchVerifier(self.image_settings)
        self.feedback = FeedbackLog(feedback, feedback_topic_name, default_tenant, self.settings.feedback_impressions)
        self.tagger = OpenTagger(store, self.understanding, default_tenant)
        book, sync = profiles or (None, None)
        self.personaliser = Personaliser(
            store,
            personalisation or PersonalisationSettings(),
            book,
            sync,
            self.feedback,
            profiles_topic_name,
            default_tenant,
        )

    # --- RPCs ------------------------------------------------------------------------------------

    @rpc_method(SERVICE_NAME)
    def Search(
        self, request: search_pb2.SearchRequest, context: grpc.ServicerContext | None
    ) -> search_pb2.SearchResponse:  # noqa: N802
        """See protos/visearch/v1/search.proto. Raises INVALID_ARGUMENT, NOT_FOUND or UNAVAILABLE."""
        start = time.perf_counter()
        window, tenant, flt = (
            _window(request.top_k, request.offset),
            self._tenant(request.tenant),
            _filter(request.filter),
        )
        kind = request.WhichOneof("query")
        ranker = self._ranker(request.ranking, tenant, "colour" if kind == "colour" else None)
        ranker = self.personaliser.begin(request.user_id, _personalise(request), ranker)
        response = search_pb2.SearchResponse()
        if kind == "image":
            return self._image_search(request, ranker, tenant, flt, window, start)
        if kind == "text":
            return self._text_search(request, ranker, tenant, flt, window, start)
        if kind == "image_id":
            query = self._stored_query(tenant, self._stored(tenant, request.image_id))
            flt.exclude_image_ids.append(request.image_id)
            mode = (
                request.region_mode
                if request.region_mode != Mode.REGION_MODE_QUERY_OBJECTS
                else Mode.REGION_MODE_GLOBAL_ONLY
            )
            routes = plan_routes(query, ranker, mode)
        elif kind == "colour":
            colour = self._colour_vector(request.colour, tenant)
            query = Query("colour", colour=colour)
            routes = [ColourRoute(colour)]
        else:
            raise InvalidEventError("set one of image, text, image_id or colour", reason="empty_query")
        hits = self.engine.search(query, routes, ranker, tenant, flt, request.offset, window, bm25_route(query, ranker))
        return self._respond(response, hits, query, ranker, tenant, request.offset, start)

    @rpc_method(SERVICE_NAME)
    def SimilarTo(
        self, request: search_pb2.SimilarToRequest, context: grpc.ServicerContext | None
    ) -> search_pb2.SearchResponse:  # noqa: N802
        """More like an indexed or given image; with ``exact_only``, near-duplicates and exact matches only,
        verified by pHash distance and ORB + RANSAC inliers (factor "exact"), best verified first."""
        start = time.perf_counter()
        window, tenant, flt = (
            _window(request.top_k, request.offset),
            self._tenant(request.tenant),
            _filter(request.filter),
        )
        item = request.WhichOneof("item")
        ranker = self._ranker(request.ranking, tenant)
        ranker = self.personaliser.begin(request.user_id, _personalise(request), ranker)
        response = search_pb2.SearchResponse()
        if item == "image_id":
            row = self._stored(tenant, request.image_id)
            flt.exclude_image_ids.append(request.image_id)
            query = self._stored_query(tenant, row)
            query_image = self.verifier.load(row.get("uri", "")) if request.exact_only else None
        elif item == "image" and request.exact_only:
            query_image = decode_image(image_bytes(request.image, self.image_settings), self.image_settings)
            query = Query(
                "image",
                visual=np.asarray(self.understanding.embed_image(request.image).image.values, dtype=np.float32),
                phash=perceptual_hash(query_image),
            )
        elif item == "image":
            plan = plan_signals(ranker, Mode.REGION_MODE_GLOBAL_ONLY, self.settings.understand_query, self.settings)
            understood = self.understanding.image(request.image, plan, start)
            query = understood.query
            response.signals.extend(understood.signals)
        else:
            raise InvalidEventError("set image_id or image", reason="empty_query")
        routes: list[AnnRoute] = [VisualRoute(query.visual_vector())]
        if query.main_visual is not None:
            routes.append(VisualRoute(query.main_visual))
        if request.exact_only:  # verified matches only, ordered by how well they verify
            fields = tuple(dict.fromkeys((*route_fields(EXACT_RANKER, query.signals()), "phash", "uri")))
            candidates = self.engine.retrieve(
                routes, tenant, flt, FetchPlan(min(max(window, EXACT_CANDIDATES), MAX_WINDOW), fields)
            )
            candidates = self.verifier.verify(candidates, query_image, query.phash)
            hits = self.engine.rank(candidates, query, EXACT_RANKER, tenant, request.offset, window)
            return self._respond(response, hits, query, EXACT_RANKER, tenant, request.offset, start)
        hits = self.engine.search(query, routes, ranker, tenant, flt, request.offset, window)
        return self._respond(response, hits, query, ranker, tenant, request.offset, start)

    @rpc_method(SERVICE_NAME)
    def Alternatives(
        self, request: search_pb2.AlternativesRequest, context: grpc.ServicerContext | None
    ) -> search_pb2.SearchResponse:  # noqa: N802
        """In-stock items of the item's taxonomy node (its category when it has no taxonomy path), ranked by
        the profile over the item's own query (visually closest first with the visual factor)."""
        start = time.perf_counter()
        if not request.image_id:
            raise InvalidEventError("set image_id", reason="empty_query")
        window, tenant, flt = (
            _window(request.top_k, request.offset),
            self._tenant(request.tenant),
            _filter(request.filter),
        )
        row = self._stored(tenant, request.image_id)
        flt.in_stock = True
        flt.exclude_image_ids.append(request.image_id)
        if row.get("taxonomy"):
            flt.taxonomy = row["taxonomy"]
        elif row.get("category"):
            flt.categories = [row["category"]]
        else:
            raise InvalidEventError(
                f"image {request.image_id!r} has neither a taxonomy path nor a category to stay in",
                reason="no_taxonomy",
            )
        query = self._stored_query(tenant, row)
        ranker = self._ranker(request.ranking, tenant)
        ranker = self.personaliser.begin(request.user_id, _personalise(request), ranker)
        hits = self.engine.search(
            query, [VisualRoute(query.visual_vector())], ranker, tenant, flt, request.offset, window
        )
        return self._respond(search_pb2.SearchResponse(), hits, query, ranker, tenant, request.offset, start)

    @rpc_method(SERVICE_NAME)
    def Feedback(
        self, request: search_pb2.FeedbackRequest, context: grpc.ServicerContext | None
    ) -> search_pb2.FeedbackResponse:  # noqa: N802
        """Publish clicks, purchases (and client-side impressions) to the feedback topic, keyed by query_id.

        Raises INVALID_ARGUMENT for an event without query_id or image_id or with no action (nothing of the
        request is published then), UNAVAILABLE when no feedback topic is configured.
        """
        return search_pb2.FeedbackResponse(accepted=self.feedback.publish(self.personaliser.enrich(request)))

    @rpc_method(SERVICE_NAME)
    def GetUserProfile(
        self, request: search_pb2.UserProfileRequest, context: grpc.ServicerContext | None
    ) -> search_pb2.UserProfileResponse:  # noqa: N802
        """The user's personalisation profile. Raises INVALID_ARGUMENT (no user_id), UNAVAILABLE (no profiles)."""
        return self.personaliser.show(request.user_id)

    @rpc_method(SERVICE_NAME)
    def ForgetUser(
        self, request: search_pb2.UserProfileRequest, context: grpc.ServicerContext | None
    ) -> search_pb2.ForgetUserResponse:  # noqa: N802
        """Delete the user's profile: a tombstone on the profiles topic, then this service's cache. Raises
        INVALID_ARGUMENT (no user_id), UNAVAILABLE (no profiles topic, or the broker did not acknowledge)."""
        return self.personaliser.forget(request.user_id)

    @rpc_method(SERVICE_NAME)
    def Tag(self, request: search_pb2.TagRequest, context: grpc.ServicerContext | None) -> search_pb2.TagResponse:  # noqa: N802
        """Open-ended tags from the linked text of the visual neighbours, beside the model's tags."""
        return self.tagger.tag(request)

    # --- helpers --------------------------------------------------------------------------------

    def _text_search(
        self,
        request: search_pb2.SearchRequest,
        ranker: Ranker,
        tenant: str,
        flt: SearchFilter,
        window: int,
        start: float,
    ) -> search_pb2.SearchResponse:
        """Search by text: the BM25 route's rows (the rerank window) are read while the text is embedded (they
        need no query vector), then the joint-space route (often the page only: ``plan_text_fetch``); BM25
        matches it did not find join the candidates."""
        if not request.text.strip():
            raise InvalidEventError("text query is empty", reason="empty_query")
        # The text-to-visual vector's route is planned with the others; a service without the map sends none.
        signals = {"joint", "text", "tags", "visual"}
        fetch = self.engine.fetch_plan(window, ranker, signals, [JointRoute(np.zeros(1)), VisualRoute(np.zeros(1))])
        bm25 = bm25_route(Query("text", text=request.text), ranker)
        rows = (
            self._pool.submit(
                bm25.fetch,
                self.store,
                self.text_index,
                tenant,
                fetch.depth,
                flt,
                fetch.fields,
                ranker.active("text") and not fetch.vectors,
                vectors=fetch.vectors,
            )
            if bm25 is not None
            else None
        )
        query = self.understanding.embed_text(request.text)
        response = search_pb2.SearchResponse(
            signals=[
                search_pb2.QuerySignal(name="text_embedding", used=True, took_ms=_ms(start)),
                search_pb2.QuerySignal(
                    name="text_visual",
                    used=query.visual is not None and ranker.active("visual"),
                    skipped="unavailable" if query.visual is None else "" if ranker.active("visual") else "not_weighed",
                ),
            ]
        )
        assert query.joint is not None  # a text query's embedding
        routes: list[AnnRoute] = [JointRoute(query.joint)]
        if query.visual is not None and ranker.active("visual"):
            routes.append(VisualRoute(query.visual))
        ceilings: dict[str, float] = {}
        candidates = self.engine.retrieve(
            routes, tenant, flt, plan_text_fetch(window, ranker, fetch), ceilings=ceilings
        )
        if rows is not None:
            merging = bm25_route(query, ranker)  # with the joint vector now: the text factor of its new rows
            assert merging is not None  # the same text and ranker as the route that fetched ``rows``
            merging.merge(candidates, rows.result())
        hits = self.engine.rank(candidates, query, ranker, tenant, request.offset, window, ceilings)
        return self._respond(response, hits, query, ranker, tenant, request.offset, start)

    def _image_search(
        self,
        request: search_pb2.SearchRequest,
        ranker: Ranker,
        tenant: str,
        flt: SearchFilter,
        window: int,
        start: float,
    ) -> search_pb2.SearchResponse:
        """Search by image: the routes of the query's embedding start as soon as it is ready, while the other
        signals (classes, text, the main photo of a framed query) finish within their budgets."""
        understand = (
            request.understand_query if request.HasField("understand_query") else self.settings.understand_query
        )
        region = request.region if request.HasField("region") else None
        plan = plan_signals(ranker, request.region_mode, understand, self.settings, region is not None)
        pending = self.understanding.begin(request.image, plan, start, region)
        routes: list[AnnRoute] = []
        if request.region_mode != Mode.REGION_MODE_QUERY_OBJECTS:
            routes = plan_routes(Query("image", visual=pending.visual()), ranker, request.region_mode, query_box=region)
        fetch = self.engine.fetch_plan(window, ranker, plan.expected(), routes or [RegionRoute(np.zeros(1))])
        ceilings: dict[str, float] = {}
        early = (
            self._pool.submit(self.engine.retrieve, routes, tenant, flt, fetch, ceilings=ceilings) if routes else None
        )
        understood = pending.finish()
        query = understood.query
        late: list[AnnRoute] = [VisualRoute(query.main_visual)] if query.main_visual is not None else []
        if request.region_mode == Mode.REGION_MODE_QUERY_OBJECTS:
            late = plan_routes(query, ranker, request.region_mode, understood.objects)
        candidates = self.engine.retrieve(
            late, tenant, flt, fetch, into=early.result() if early else {}, ceilings=ceilings
        )
        if plan.pixels and ranker.active("tags") and not plan.object_tags:
            # The objects of an indexed image are among its tags; the query's, with no detector run on it, are
            # estimated from its nearest visual neighbours.
            query.tags.update(
                {
                    label: max(score, query.tags.get(label, 0.0))
                    for label, score in neighbour_object_tags(
                        [(c.factors.get("visual", 0.0), c.stored.fields) for c in candidates.values()]
                    ).items()
                }
            )
        self.engine.add_bm25(candidates, bm25_route(query, ranker), tenant, flt, fetch)
        hits = self.engine.rank(candidates, query, ranker, tenant, request.offset, window, ceilings)
        response = search_pb2.SearchResponse(signals=understood.signals)
        if understood.main_region is not None:
            response.main_region.CopyFrom(understood.main_region)
        return self._respond(response, hits, query, ranker, tenant, request.offset, start)

    def _respond(
        self,
        response: search_pb2.SearchResponse,
        hits: list[search_pb2.Hit],
        query: Query,
        ranker: Ranker,
        tenant: str,
        offset: int,
        start: float,
    ) -> search_pb2.SearchResponse:
        response.hits.extend(hits)
        response.query_id, response.ranker = uuid.uuid4().hex, ranker.name
        response.took_ms = _ms(start)
        self.feedback.log_impressions(response, tenant, query.summary(), offset, self.personaliser.current_user())
        self.personaliser.served(response)
        log.info(
            "search",
            query=query.kind,
            tenant=tenant,
            ranker=ranker.name,
            hits=len(response.hits),
            signals=[s.name for s in response.signals if s.used],
            took_ms=round(response.took_ms, 2),
        )
        return response

    def _ranker(self, profile: search_pb2.RankingProfile, tenant: str, default: str | None = None) -> Ranker:
        fusion = {search_pb2.FUSION_BLEND: "blend", search_pb2.FUSION_RRF: "rrf"}.get(profile.fusion)
        return self.rankers.resolve(tenant, profile.name, dict(profile.weights), fusion, default)

    def _tenant(self, tenant: str) -> str:
        return tenant or self.default_tenant

    def _stored(self, tenant: str, image_id: str) -> dict[str, Any]:
        row = self.store.get(tenant, image_id, "image")
        if row is None:
            raise NotFoundError(f"image {image_id!r} is not indexed for tenant {tenant!r}")
        return row

    def _stored_query(self, tenant: str, row: dict[str, Any]) -> Query:
        """The query an indexed item makes ("more like this", alternatives): its vector, joint vector,
        colour descriptor, tags, taxonomy and perceptual hash as stored."""
        image_id = row["image_id"]
        joint = self.store.vectors("joint", tenant, [image_id]).get(image_id)
        colour = self.store.vectors("colour", tenant, [image_id]).get(image_id)
        return Query(
            "image_id",
            visual=np.asarray(row["vector"], dtype=np.float32),
            joint=joint,
            colour=colour,
            tags=hit_tags(row),
            taxonomy=row.get("taxonomy", ""),
            phash=int(row.get("phash") or 0),
        )

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


def _personalise(
    request: search_pb2.SearchRequest | search_pb2.SimilarToRequest | search_pb2.AlternativesRequest,
) -> bool | None:
    """The request's ``personalise`` (None: not set, the service's default)."""
    return request.personalise if request.HasField("personalise") else None


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _window(top_k: int, offset: int) -> int:
    """``offset + top_k`` after validating both (top_k 0: the default 10).

    Raises:
        InvalidEventError: top_k outside 1..1000 (``bad_top_k``), offset < 0 or offset + top_k > 16384 (``bad_offset``).
    """
    top_k = top_k or DEFAULT_TOP_K
    if not 1 <= top_k <= MAX_TOP_K:
        raise InvalidEventError(f"top_k must be in 1..{MAX_TOP_K}, got {top_k}", reason="bad_top_k")
    if offset < 0 or offset + top_k > MAX_WINDOW:
        raise InvalidEventError(f"offset must be >= 0 and offset + top_k <= {MAX_WINDOW}", reason="bad_offset")
    return offset + top_k


def _filter(f: search_pb2.Filter) -> SearchFilter:
    return SearchFilter(
        categories=list(f.categories),
        brands=list(f.brands),
        in_stock=f.in_stock if f.HasField("in_stock") else None,
        price_min=f.price_min if f.HasField("price_min") else None,
        price_max=f.price_max if f.HasField("price_max") else None,
        safe=f.safe if f.HasField("safe") else None,
    )
