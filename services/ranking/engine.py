"""The query engine: routes -> factor registry -> ranker -> page, for every search RPC once it has a query.

The planner (``planner.py``) and query understanding (``understanding.py``) turn a request into a
:class:`~visearch.services.ranking.query.Query` and its routes; :meth:`QueryEngine.retrieve` runs the
routes (``routes.py``), :meth:`QueryEngine.rank` gives every candidate the factors the ranker weighs
(``factor_registry.py``), orders them (``ranker.py``), reads the page's remaining fields in one query and
returns the API's hits with each factor's value and contribution.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from concurrent.futures import Executor
from dataclasses import replace
from typing import TYPE_CHECKING

from visearch.services.ranking.factor_registry import ScoringContext, score_candidates, weighed
from visearch.services.ranking.planner import FetchPlan, plan_fetch
from visearch.services.ranking.query import Candidate, Query
from visearch.services.ranking.ranker import FACTORS, RankedHit, Ranker
from visearch.services.ranking.routes import AnnRoute, Bm25Route, RegionRoute, gather
from visearch.shared.config import RankingSettings
from visearch.shared.store import OUTPUT_FIELDS, MilvusStore, SearchFilter
from visearch.v1 import search_pb2

if TYPE_CHECKING:
    from visearch.services.ranking.text_index import TextIndex

_FACTOR_ORDER = {name: n for n, name in enumerate(FACTORS)}


class QueryEngine:
    """Retrieval and ranking over one store and BM25 index.

    Args:
        store: the Milvus store.
        text_index: the in-process BM25 index (``text_index.TextIndex``), None where Milvus does BM25.
        settings: rerank depth (and its embedded-store value) and the freshness half-life.
        pool: executor for concurrent routes (a Milvus server only).
    """

    def __init__(
        self, store: MilvusStore, text_index: TextIndex | None, settings: RankingSettings, pool: Executor
    ) -> None:
        self.store = store
        self.text_index = text_index
        self.settings = settings
        self.pool = pool
        # Milvus Lite's cost per search grows with the rows it returns; a server's top-100 costs about its top-30.
        self.rerank_depth = (
            settings.rerank_depth if store.concurrent else min(settings.rerank_depth, settings.rerank_depth_embedded)
        )

    def fetch_plan(
        self, window: int, ranker: Ranker, signals: Collection[str], routes: Sequence[AnnRoute]
    ) -> FetchPlan:
        """:func:`~visearch.services.ranking.planner.plan_fetch` with this store's rerank depth. On Milvus Lite,
        whose searches cost per row returned, the region route looks for the page's number of images only: a
        region match must beat the page to matter (the global routes keep the rerank window)."""
        fetch = plan_fetch(window, ranker, signals, {r.factor for r in routes}, self.rerank_depth)
        if not self.store.concurrent and (fetch.factor_fields is not None or fetch.fields != tuple(OUTPUT_FIELDS)):
            # Milvus Lite, a rerank window: its calls run one at a time at a cost per call, so the hits' other
            # vectors come with them. A server computes the missing similarities itself (restricted searches, in
            # parallel), which moves no vector over the wire (a top-100's image vectors alone are 512 kB).
            spaces = {f.space for f in weighed(ranker, signals) if f.space is not None}
            fetch = replace(fetch, vectors=tuple(s for s in self.store.row_spaces("image") if s in spaces))
        if not self.store.concurrent:
            fetch = replace(fetch, region_depth=min(fetch.depth, window))
        return fetch

    def search(
        self,
        query: Query,
        routes: Sequence[AnnRoute],
        ranker: Ranker,
        tenant: str,
        flt: SearchFilter,
        offset: int,
        window: int,
        bm25: Bm25Route | None = None,
    ) -> list[search_pb2.Hit]:
        """The hits ``offset`` .. ``window`` (exclusive) of the query, best first."""
        fetch = self.fetch_plan(window, ranker, query.signals(), routes)
        ceilings: dict[str, float] = {}
        candidates = self.retrieve(routes, tenant, flt, fetch, ceilings=ceilings)
        self.add_bm25(candidates, bm25, tenant, flt, fetch)
        return self.rank(candidates, query, ranker, tenant, offset, window, ceilings)

    def retrieve(
        self,
        routes: Sequence[AnnRoute],
        tenant: str,
        flt: SearchFilter,
        fetch: FetchPlan,
        into: dict[str, Candidate] | None = None,
        ceilings: dict[str, float] | None = None,
    ) -> dict[str, Candidate]:
        """Candidates of the routes by image id (``routes.gather``), merged ``into`` earlier ones when given
        (each factor keeps its best value; the earlier row keeps providing the fields). ``ceilings`` receives
        the routes' lowest score per factor (see ``gather``)."""
        if (
            not self.store.concurrent
            and any(isinstance(r, RegionRoute) for r in routes)
            and any(not isinstance(r, RegionRoute) for r in routes)
        ):
            found = self._scored_regions(routes, tenant, flt, fetch, ceilings)
        else:
            found = (
                gather(
                    routes,
                    self.store,
                    tenant,
                    fetch.depth,
                    flt,
                    fetch.fields,
                    self.pool,
                    ceilings,
                    fetch.factor_fields,
                    fetch.region_depth,
                    vectors=fetch.vectors,
                )
                if routes
                else {}
            )
        if into is None:
            return found
        for image_id, candidate in found.items():
            if image_id not in into:
                into[image_id] = candidate
                continue
            for factor, value in candidate.factors.items():
                into[image_id].offer(factor, value, candidate.region if factor == "region" else None)
        return into

    def _scored_regions(
        self,
        routes: Sequence[AnnRoute],
        tenant: str,
        flt: SearchFilter,
        fetch: FetchPlan,
        ceilings: dict[str, float] | None,
    ) -> dict[str, Candidate]:
        """Milvus Lite: the global routes find the candidates, then one search restricted to their ids gives
        the region factor of their regions. Lite runs searches one at a time at a cost per call and per row
        returned: the region route searching the whole catalogue, then reading the global vector of the images
        only it found, took three of a blended search's five calls. A server keeps the region route's own
        candidates (``gather``)."""
        region_routes = [r for r in routes if isinstance(r, RegionRoute)]
        found = gather(
            [r for r in routes if not isinstance(r, RegionRoute)],
            self.store,
            tenant,
            fetch.depth,
            flt,
            fetch.fields,
            self.pool,
            ceilings,
            vectors=fetch.vectors,
        )
        if found:
            known = replace(flt, image_ids=list(found))
            gather(region_routes, self.store, tenant, len(found), known, ("image_id",), self.pool, into=found)
        return found

    def add_bm25(
        self, candidates: dict[str, Candidate], bm25: Bm25Route | None, tenant: str, flt: SearchFilter, fetch: FetchPlan
    ) -> None:
        """Add the BM25 route's candidates (nothing when there is no BM25 route)."""
        if bm25 is not None:
            bm25.add_to(candidates, self.store, self.text_index, tenant, fetch.depth, flt, fetch.fields)

    def rank(
        self,
        candidates: dict[str, Candidate],
        query: Query,
        ranker: Ranker,
        tenant: str,
        offset: int,
        window: int,
        ceilings: dict[str, float] | None = None,
    ) -> list[search_pb2.Hit]:
        """Score the candidates by every weighed factor, rank them, read the page's fields, build the hits.

        ``ceilings``: the routes' lowest score per factor (``retrieve``), which lets the scoring skip the
        candidates that cannot reach the page.
        """
        candidates = score_candidates(
            candidates,
            query,
            ranker,
            ScoringContext(self.store, self.text_index, tenant, self.settings.freshness_half_life_days),
            keep=window,
            ceilings=ceilings,
        )
        ranked = ranker.rank({i: c.factors for i, c in candidates.items()})[offset:window]
        self._read_page_fields(candidates, [r.image_id for r in ranked], tenant)
        return [to_hit(candidates[r.image_id], r) for r in ranked]

    def _read_page_fields(self, candidates: dict[str, Candidate], image_ids: list[str], tenant: str) -> None:
        """Complete the page's candidates with every stored field (title, uri, ...) in one query, when a route
        read only the factors' fields of a deep rerank window."""
        partial = [i for i in image_ids if not candidates[i].stored.fields.keys() >= set(OUTPUT_FIELDS)]
        for stored in self.store.rows(tenant, partial) if partial else []:
            candidates[stored.image_id].stored.fields.update(stored.fields)


def to_hit(candidate: Candidate, ranked: RankedHit) -> search_pb2.Hit:
    """The API's hit: stored fields, score, and each factor's value and contribution (in FACTORS order)."""
    fields = candidate.stored.fields
    hit = search_pb2.Hit(
        image_id=candidate.stored.image_id,
        score=ranked.score,
        title=fields.get("title", ""),
        category=fields.get("category", ""),
        brand=fields.get("brand", ""),
        price=fields.get("price", 0.0),
        in_stock=fields.get("in_stock", False),
        uri=fields.get("uri", ""),
        factors=[
            search_pb2.FactorScore(name=name, value=value, contribution=ranked.contributions.get(name, 0.0))
            for name, value in sorted(
                candidate.factors.items(), key=lambda kv: _FACTOR_ORDER.get(kv[0], len(_FACTOR_ORDER))
            )
        ],
        duplicate_of=fields.get("duplicate_of", ""),
        safe=fields.get("safe", True),
        tags=[t for t in (fields.get("tags") or "").split(";") if t],
        taxonomy=fields.get("taxonomy", ""),
        ocr_text=fields.get("ocr_text", ""),
    )
    if candidate.region is not None:
        hit.region.CopyFrom(candidate.region)
    return hit
