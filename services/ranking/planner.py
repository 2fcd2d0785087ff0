"""The query planner: from a request and its ranker, which signals and routes a search needs, and how deep.

- :func:`plan_signals`: the optional query-understanding signals of an image query (``understanding.py``),
  only those that feed a factor the ranker weighs (colours and pHash for the colour/phash/tags factors,
  taxonomy and concepts for tags/taxonomy, OCR for BM25), the main photo of a framed query, and objects only
  for REGION_MODE_QUERY_OBJECTS. Their time budgets are ``RankingSettings.signal_budgets_ms``.
- :func:`plan_routes`: the retrieval routes (``routes.py``) of the understood query.
- :func:`plan_fetch`: how many candidates each route fetches and which stored fields it reads: the rerank
  window with the weighed factors' fields, or only the page with every field when the ranker weighs nothing
  but the routes' own similarity (visual_only: the ANN order is the final order, one query per search).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from visearch.services.ranking.factor_registry import route_fields, weighed
from visearch.services.ranking.query import Query
from visearch.services.ranking.ranker import Ranker
from visearch.services.ranking.routes import MAX_WINDOW, AnnRoute, Bm25Route, RegionRoute, VisualRoute
from visearch.services.ranking.understanding import QueryObject, SignalPlan
from visearch.shared.config import RankingSettings
from visearch.shared.store import OUTPUT_FIELDS
from visearch.v1 import common_pb2, search_pb2

Mode = search_pb2.RegionMode
# Up to this rerank window a route reads every field with its candidates: on Milvus Lite a top-30 search with
# every field costs ~1.6 ms more than with the factors' fields alone, a second read of the page ~5 ms.
ALL_FIELDS_DEPTH = 50


@dataclass(frozen=True)
class FetchPlan:
    """Candidates per route (``depth``) and the stored fields each carries: ``fields`` for the routes whose
    hits are the likely page (global visual, joint, colour), ``factor_fields`` (what the factors read; default
    ``fields``) for the region route, whose hits are rows per object and rarely the page."""

    depth: int
    fields: tuple[str, ...]
    factor_fields: tuple[str, ...] | None = None
    region_depth: int | None = None  # images the region route looks for (default ``depth``)
    # Spaces of the weighed vector factors whose stored vectors the global routes read with their hits, where the
    # store keeps them on the searched row (``MilvusStore.row_spaces``; Milvus Lite): those factors need no other
    # search.
    vectors: tuple[str, ...] = ()


def plan_signals(
    ranker: Ranker, region_mode: int, understand: bool, settings: RankingSettings, has_region: bool = False
) -> SignalPlan:
    """The optional signals of an image query (``understand`` False: none but the objects the mode needs).

    ``has_region``: the request names a box of the query image (no framing: the box is the photo).
    """
    objects = region_mode == Mode.REGION_MODE_QUERY_OBJECTS
    if not understand:
        return SignalPlan(objects=objects)
    return SignalPlan(
        pixels=any(ranker.active(f) for f in ("colour", "phash", "tags")),
        framing=settings.framed_queries and not has_region and not objects and ranker.active("visual"),
        classes=ranker.active("tags") or ranker.active("taxonomy"),
        text=ranker.active("bm25"),
        objects=objects,
        object_tags=settings.query_object_tags and ranker.active("tags"),
    )


def plan_routes(
    query: Query,
    ranker: Ranker,
    region_mode: int = Mode.REGION_MODE_AUTO,
    objects: list[QueryObject] | None = None,
    query_box: common_pb2.Box | None = None,
) -> list[AnnRoute]:
    """The ANN routes of an image or indexed-item query by region mode (BM25: :func:`bm25_route`).

    AUTO: the global embeddings (and a framed query's main photo) plus the indexed regions when the region
    factor is weighed; GLOBAL_ONLY: the global embeddings; QUERY_OBJECTS: the regions, once per query object
    (the whole image against the regions when none was found).
    """
    routes: list[AnnRoute] = []
    if region_mode != Mode.REGION_MODE_QUERY_OBJECTS:
        routes.append(VisualRoute(query.visual_vector()))
        if query.main_visual is not None:
            routes.append(VisualRoute(query.main_visual))
    if region_mode == Mode.REGION_MODE_AUTO and ranker.active("region"):
        routes.append(RegionRoute(query.visual_vector(), query_box=query_box))
    elif region_mode == Mode.REGION_MODE_QUERY_OBJECTS:
        if not objects:
            routes.append(RegionRoute(query.visual_vector()))
        else:
            routes += [RegionRoute(o.vector, query_box=o.detection.box, query_label=o.detection.label) for o in objects]
    return routes


def bm25_route(query: Query, ranker: Ranker) -> Bm25Route | None:
    """The BM25 route when the query has text and the ranker weighs BM25 (with the joint vector when it
    weighs the text factor too)."""
    if not query.text or not ranker.active("bm25"):
        return None
    return Bm25Route(query.text, query.joint if ranker.active("text") else None)


def plan_fetch(
    window: int, ranker: Ranker, signals: Collection[str], route_factors: Collection[str], rerank_depth: int
) -> FetchPlan:
    """How deep the routes fetch and which fields they read.

    Args:
        window: offset + top_k of the request.
        signals: the query's signals (``Query.signals()``, or what the signal plan expects).
        route_factors: the factors of the query's routes.
        rerank_depth: the rerank window (``RankingSettings.rerank_depth``, or its embedded-store value).

    Only the page (``window``), with every field (no second read), when the routes share one factor, the only
    one the ranker weighs (visual_only by image or by text: the ANN order is the final order); otherwise the
    rerank window (at least the page) with the weighed factors' fields and, when that window is no deeper
    than ``ALL_FIELDS_DEPTH``, every other field too: the page needs no second read.
    """
    factors = {f.name for f in weighed(ranker, signals)}
    route_factors = set(route_factors)
    if len(route_factors) == 1 and factors == route_factors and ranker.weights[next(iter(factors))] > 0:
        return FetchPlan(window, tuple(OUTPUT_FIELDS))
    depth = min(max(window, rerank_depth), MAX_WINDOW)
    factor_fields = route_fields(ranker, signals)
    if depth <= ALL_FIELDS_DEPTH:
        return FetchPlan(depth, tuple(dict.fromkeys((*factor_fields, *OUTPUT_FIELDS))), factor_fields)
    return FetchPlan(depth, factor_fields)


# Text queries: the factors whose candidates the BM25 route brings (a tag is a word of the BM25 document).
LEXICAL_FACTORS = frozenset({"bm25", "tags"})
# Below this total weight, factors of the candidate alone (in_stock, freshness) only break near-ties.
TIE_BREAK_WEIGHT = 0.05


def plan_text_fetch(window: int, ranker: Ranker, text_fetch: FetchPlan) -> FetchPlan:
    """The joint-space route's fetch for a text query, given the rerank window's plan ``text_fetch``.

    Only the page (``window``), with every field, when what else the ranker weighs cannot lift a joint-space
    candidate from beyond the page: BM25 and tag matches are lexical, and their candidates come from the
    BM25 route (which reads the rerank window); in_stock / freshness weighing less than
    :data:`TIE_BREAK_WEIGHT` in all break near-ties only (the hits still read ``text_fetch``'s vectors, which
    give the other vector factors without another read). Otherwise ``text_fetch`` itself.
    """
    others = {f.name for f in weighed(ranker, {"joint", "text", "tags"})} - {"text"} - LEXICAL_FACTORS
    if sum(abs(ranker.weights.get(f, 0.0)) for f in others) < TIE_BREAK_WEIGHT:
        return FetchPlan(window, tuple(OUTPUT_FIELDS), vectors=text_fetch.vectors)
    return text_fetch
