"""The query engine (services/ranking/engine.py): its fetch plan's depth per store kind, retrieval merged
into earlier candidates, ranking that reads only the page's missing fields in one read, and the API's hit
with its factors in FACTORS order. The store is a stand-in that records what each call asked."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from visearch.services.ranking.engine import QueryEngine, to_hit
from visearch.services.ranking.planner import ALL_FIELDS_DEPTH, FetchPlan
from visearch.services.ranking.query import Candidate, Query
from visearch.services.ranking.ranker import BUILTIN_PROFILES, FACTORS, RankedHit, Ranker
from visearch.services.ranking.routes import Bm25Route, RegionRoute, VisualRoute
from visearch.shared.config import RankingSettings
from visearch.shared.store import OUTPUT_FIELDS, SearchFilter, StoredHit
from visearch.v1 import common_pb2, search_pb2

TENANT = "default"


def profile(name: str) -> Ranker:
    return Ranker(name, BUILTIN_PROFILES[name])


class PagedStore:
    """A store of ``size`` images whose searches return the fields asked for, and whose rows() returns every
    field; it records what each call asked. Image n scores 1 - n / (2 * size)."""

    def row_spaces(self, space):
        return ()

    def __init__(self, concurrent: bool = False, size: int = 30) -> None:
        self.concurrent = concurrent
        self.size = size
        self.searches: list[tuple[int, tuple]] = []
        self.row_reads: list[list[str]] = []
        self.similarity_calls: list[tuple] = []

    def text_rows(self, tenant):
        return iter(())

    def search(self, space, vector, *, tenant, top_k, filter, output_fields, vector_spaces=()):
        self.searches.append((top_k, tuple(output_fields)))
        return [
            StoredHit(f"img-{n}", 1.0 - n / (2 * self.size), {f: self._value(f, n) for f in output_fields})
            for n in range(min(top_k, self.size))
        ]

    def similarities(self, space, tenant, image_ids, vectors):
        ids = list(image_ids)
        self.similarity_calls.append((space, ids))
        return {i: 0.0 for i in ids}

    def rows(self, tenant, image_ids, filter=None, space="image", with_vector=False, output_fields=OUTPUT_FIELDS):
        ids = list(image_ids)
        self.row_reads.append(ids)
        return [StoredHit(i, 0.0, {f: self._value(f, int(i.split("-")[1])) for f in output_fields}) for i in ids]

    @staticmethod
    def _value(name: str, n: int):
        return {
            "image_id": f"img-{n}",
            "title": f"title {n}",
            "in_stock": True,
            "phash": 0,
            "updated_ms": 0,
            "price": 1.0,
            "safe": True,
        }.get(name, "")


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def test_routes_read_the_factor_fields_and_the_page_reads_the_rest(pool):
    store = PagedStore(concurrent=True, size=120)  # a server: the full rerank window (100 > ALL_FIELDS_DEPTH)
    engine = QueryEngine(store, None, RankingSettings(rerank_depth=100), pool)
    ranker = profile("blended")
    query = Query("image", visual=np.ones(4, dtype=np.float32))
    routes = [VisualRoute(query.visual)]
    fetch = engine.fetch_plan(5, ranker, query.signals(), routes)
    assert fetch == FetchPlan(100, ("image_id", "in_stock"))
    candidates = engine.retrieve(routes, TENANT, SearchFilter(), fetch)
    assert store.searches == [(100, ("image_id", "in_stock"))]
    assert len(candidates) == 100 and all("title" not in c.stored.fields for c in candidates.values())
    hits = engine.rank(candidates, query, ranker, TENANT, offset=2, window=5)
    assert store.row_reads == [["img-2", "img-3", "img-4"]]  # the page only, in one read
    assert store.similarity_calls == []  # every candidate came with its visual score
    assert [h.title for h in hits] == ["title 2", "title 3", "title 4"]
    assert [h.image_id for h in hits] == ["img-2", "img-3", "img-4"]


def test_a_route_that_fetches_only_the_page_reads_every_field_at_once(pool):
    store = PagedStore()
    engine = QueryEngine(store, None, RankingSettings(), pool)
    ranker = profile("visual_only")
    query = Query("image", visual=np.ones(4, dtype=np.float32))
    routes = [VisualRoute(query.visual)]
    fetch = engine.fetch_plan(5, ranker, query.signals(), routes)
    candidates = engine.retrieve(routes, TENANT, SearchFilter(), fetch)
    hits = engine.rank(candidates, query, ranker, TENANT, offset=0, window=5)
    assert store.searches == [(5, tuple(OUTPUT_FIELDS))]
    assert store.row_reads == []  # nothing left to read
    assert [h.title for h in hits] == [f"title {n}" for n in range(5)]


def test_a_shallow_rerank_window_reads_every_field_with_the_candidates(pool):
    store = PagedStore()  # Milvus Lite: min(rerank_depth, rerank_depth_embedded) = 30 <= ALL_FIELDS_DEPTH
    engine = QueryEngine(store, None, RankingSettings(rerank_depth=100, rerank_depth_embedded=30), pool)
    ranker = profile("blended")
    query = Query("image", visual=np.ones(4, dtype=np.float32))
    hits = engine.search(query, [VisualRoute(query.visual)], ranker, TENANT, SearchFilter(), 2, 5)
    assert len(store.searches) == 1 and store.searches[0][0] == 30
    assert set(store.searches[0][1]) == set(OUTPUT_FIELDS)
    assert store.row_reads == []
    assert [h.title for h in hits] == ["title 2", "title 3", "title 4"]


@pytest.mark.parametrize(
    ("concurrent", "rerank_depth", "embedded", "expected"),
    [
        (True, 100, 30, 100),  # a server: the rerank depth
        (False, 100, 30, 30),  # Milvus Lite: the embedded depth
        (False, 20, 30, 20),  # ... but never deeper than the rerank depth
        (True, 200, 300, 200),
    ],
)
def test_the_rerank_depth_depends_on_the_store(concurrent, rerank_depth, embedded, expected, pool):
    engine = QueryEngine(
        PagedStore(concurrent), None, RankingSettings(rerank_depth=rerank_depth, rerank_depth_embedded=embedded), pool
    )
    assert engine.rerank_depth == expected
    fetch = engine.fetch_plan(10, profile("blended"), {"visual"}, [VisualRoute(np.ones(4))])
    assert fetch.depth == expected
    assert (fetch.fields == ("image_id", "in_stock")) == (expected > ALL_FIELDS_DEPTH)
    # The page alone (visual_only's single route factor) ignores the rerank depth.
    assert engine.fetch_plan(10, profile("visual_only"), {"visual"}, [VisualRoute(np.ones(4))]).depth == 10


def test_where_rows_hold_every_vector_the_routes_read_the_weighed_factors_vectors(pool):
    """Unified store layout on Milvus Lite: a rerank window reads the vectors of the weighed vector factors with
    the hits (the colour factor only when the query has a colour); the page alone (visual_only) reads none;
    per_space none; a server none either (it computes the missing similarities itself)."""

    class UnifiedStore(PagedStore):
        def row_spaces(self, space):
            return ("image", "joint", "colour")

    engine = QueryEngine(UnifiedStore(False), None, RankingSettings(), pool)
    route = [VisualRoute(np.ones(4))]
    assert engine.fetch_plan(10, profile("blended"), {"visual", "joint", "colour"}, route).vectors == (
        "image",
        "joint",
        "colour",
    )
    assert engine.fetch_plan(10, profile("blended"), {"visual", "joint"}, route).vectors == ("image", "joint")
    assert engine.fetch_plan(10, profile("visual_only"), {"visual"}, route).vectors == ()  # the page alone
    per_space = QueryEngine(PagedStore(False), None, RankingSettings(), pool)
    assert per_space.fetch_plan(10, profile("blended"), {"visual", "joint"}, route).vectors == ()
    server = QueryEngine(UnifiedStore(True), None, RankingSettings(), pool)
    assert server.fetch_plan(10, profile("blended"), {"visual", "joint"}, route).vectors == ()


@pytest.mark.parametrize(("concurrent", "region_depth"), [(True, None), (False, 10)])
def test_on_milvus_lite_the_region_route_looks_for_the_page_only(concurrent, region_depth, pool):
    engine = QueryEngine(
        PagedStore(concurrent), None, RankingSettings(rerank_depth=100, rerank_depth_embedded=30), pool
    )
    fetch = engine.fetch_plan(10, profile("blended"), {"visual"}, [VisualRoute(np.ones(4)), RegionRoute(np.ones(4))])
    assert fetch.depth == (100 if concurrent else 30)
    assert fetch.region_depth == region_depth


def test_retrieve_passes_the_region_fields_and_depth_to_the_region_route(pool):
    class Recording(MergeStore):
        def __init__(self):
            super().__init__({})
            self.asked = []

        def search(self, space, vector, *, tenant, top_k, filter, output_fields, vector_spaces=()):
            self.asked.append((space, top_k, tuple(output_fields)))
            return super().search(space, vector, tenant=tenant, top_k=top_k, filter=filter, output_fields=output_fields)

    store = Recording()
    store.concurrent = True  # a server: the region route finds its own candidates
    engine = QueryEngine(store, None, RankingSettings(), pool)
    fetch = FetchPlan(30, ("image_id", "in_stock", "title"), ("image_id", "in_stock"), 10)
    engine.retrieve([VisualRoute(np.ones(4)), RegionRoute(np.ones(4))], TENANT, SearchFilter(), fetch)
    assert sorted(store.asked) == [
        ("image", 30, ("image_id", "in_stock", "title")),
        ("region", 30, ("image_id", "in_stock")),
    ]


def test_on_milvus_lite_the_region_route_scores_the_global_candidates_only(pool):
    """Milvus Lite: the global route finds the candidates, one region search restricted to their ids (reading
    the region fields and the id only) gives their region factor; a region hit of another image is dropped."""
    hits = {
        "image": [
            StoredHit("a", 0.9, {"image_id": "a", "title": "A"}),
            StoredHit("b", 0.8, {"image_id": "b", "title": "B"}),
        ],
        "region": [
            StoredHit("b", 0.7, {"image_id": "b", "region_index": 1, "label": "dog", "box": [0, 0, 5, 5]}),
            StoredHit("c", 0.95, {"image_id": "c", "region_index": 0, "label": "cat", "box": [0, 0, 5, 5]}),
        ],
    }
    asked = []

    class Restricted(MergeStore):
        def search(self, space, vector, *, tenant, top_k, filter, output_fields, vector_spaces=()):
            asked.append((space, top_k, tuple(output_fields), list(filter.image_ids)))
            return super().search(space, vector, tenant=tenant, top_k=top_k, filter=filter, output_fields=output_fields)

    engine = QueryEngine(Restricted(hits), None, RankingSettings(), pool)
    fetch = FetchPlan(30, ("image_id", "title"), ("image_id",), 10)
    found = engine.retrieve([VisualRoute(np.ones(4)), RegionRoute(np.ones(4))], TENANT, SearchFilter(), fetch)
    assert asked == [("image", 30, ("image_id", "title"), []), ("region", 6, ("image_id",), ["a", "b"])]
    assert set(found) == {"a", "b"}
    assert found["b"].factors == {"visual": 0.8, "region": 0.7} and found["b"].region.label == "dog"
    assert found["b"].stored.fields["title"] == "B"  # the global route's row keeps providing the fields


def test_the_fetch_plan_counts_every_routes_factor(pool):
    engine = QueryEngine(PagedStore(True), None, RankingSettings(rerank_depth=100), pool)
    routes = [VisualRoute(np.ones(4)), RegionRoute(np.ones(4))]
    assert engine.fetch_plan(10, profile("visual_only"), {"visual"}, routes).depth == 100


class MergeStore:
    """A serial store whose searches return the given hits per space."""

    concurrent = False

    def row_spaces(self, space):
        return ()

    def __init__(self, hits: dict[str, list[StoredHit]]) -> None:
        self.hits = hits
        self.calls = 0

    def search(self, space, vector, *, tenant, top_k, filter, output_fields, vector_spaces=()):
        self.calls += 1
        return [StoredHit(h.image_id, h.score, dict(h.fields)) for h in self.hits.get(space, [])]


def _region_hit(image_id: str, score: float, label: str) -> StoredHit:
    return StoredHit(
        image_id, score, {"image_id": image_id, "row": "late", "box": [0, 0, 2, 2], "region_index": 1, "label": label}
    )


def test_retrieve_merges_into_earlier_candidates(pool):
    early_region = search_pb2.RegionMatch(index=0, label="early")
    into = {
        "a": Candidate(StoredHit("a", 0.5, {"image_id": "a", "row": "early"}), {"visual": 0.5}),
        "b": Candidate(
            StoredHit("b", 0.9, {"image_id": "b", "row": "early"}), {"visual": 0.9, "region": 0.8}, early_region
        ),
        "c": Candidate(StoredHit("c", 0.2, {"image_id": "c", "row": "early"}), {"visual": 0.2}),
    }
    store = MergeStore(
        {
            "image": [
                StoredHit("a", 0.8, {"image_id": "a", "row": "late"}),
                StoredHit("b", 0.4, {"image_id": "b", "row": "late"}),
                StoredHit("d", 0.3, {"image_id": "d", "row": "late"}),
            ],
            "region": [_region_hit("a", 0.6, "better"), _region_hit("b", 0.7, "worse")],
        }
    )
    engine = QueryEngine(store, None, RankingSettings(), pool)
    merged = engine.retrieve(
        [VisualRoute(np.ones(4)), RegionRoute(np.ones(4))],
        TENANT,
        SearchFilter(),
        FetchPlan(10, ("image_id",)),
        into=into,
    )
    assert merged is into
    assert set(merged) == {"a", "b", "c", "d"}
    assert {i: c.stored.fields["row"] for i, c in merged.items()} == {
        "a": "early",
        "b": "early",
        "c": "early",
        "d": "late",
    }
    assert merged["a"].factors == {"visual": 0.8, "region": 0.6}  # each factor keeps its best value
    assert merged["a"].region.label == "better"
    assert merged["b"].factors == {"visual": 0.9, "region": 0.8}
    assert merged["b"].region is early_region  # a worse region match leaves the better one
    assert merged["c"].factors == {"visual": 0.2}
    assert merged["d"].factors == {"visual": 0.3}


def test_retrieve_without_routes_touches_no_store(pool):
    store = MergeStore({})
    engine = QueryEngine(store, None, RankingSettings(), pool)
    into = {"a": Candidate(StoredHit("a", 0.5, {"image_id": "a"}), {"visual": 0.5})}
    assert engine.retrieve([], TENANT, SearchFilter(), FetchPlan(10, ("image_id",)), into=into) is into
    assert engine.retrieve([], TENANT, SearchFilter(), FetchPlan(10, ("image_id",))) == {}
    assert store.calls == 0
    assert into["a"].factors == {"visual": 0.5}


def test_retrieve_without_earlier_candidates_returns_the_routes_own(pool):
    store = MergeStore({"image": [StoredHit("a", 0.8, {"image_id": "a"})]})
    engine = QueryEngine(store, None, RankingSettings(), pool)
    found = engine.retrieve([VisualRoute(np.ones(4))], TENANT, SearchFilter(), FetchPlan(10, ("image_id",)))
    assert list(found) == ["a"] and found["a"].factors == {"visual": 0.8}


class BmIndex:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def search(self, tenant, text, depth):
        self.calls.append((tenant, text, depth))
        return [("z", 1.0)]


class BmStore:
    concurrent = False

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def rows(self, tenant, image_ids, filter=None, space="image", with_vector=False, output_fields=OUTPUT_FIELDS):
        self.calls.append((list(image_ids), space, with_vector, tuple(output_fields)))
        return [StoredHit("z", 0.0, {"image_id": "z", "vector": [1.0, 0.0]})]


def test_add_bm25_uses_the_fetch_plans_depth_and_fields(pool):
    store, index = BmStore(), BmIndex()
    engine = QueryEngine(store, index, RankingSettings(), pool)
    candidates: dict[str, Candidate] = {}
    engine.add_bm25(candidates, None, TENANT, SearchFilter(), FetchPlan(40, ("image_id", "tags")))
    assert candidates == {} and index.calls == [] and store.calls == []
    engine.add_bm25(
        candidates,
        Bm25Route("red", np.array([0.5, 0.5], np.float32)),
        TENANT,
        SearchFilter(),
        FetchPlan(40, ("image_id", "tags")),
    )
    assert index.calls == [(TENANT, "red", 40)]
    assert store.calls == [(["z"], "joint", True, ("image_id", "tags"))]
    assert candidates["z"].factors == {"text": 0.5}


def test_to_hit_lists_the_factors_in_factors_order():
    stored = StoredHit(
        "a",
        0.0,
        {
            "image_id": "a",
            "title": "Red shoe",
            "category": "shoes",
            "brand": "b",
            "price": 12.5,
            "in_stock": True,
            "uri": "file:///a.jpg",
            "tags": "red;;shoe",
            "taxonomy": "clothing > shoe",
            "ocr_text": "SALE",
            "safe": False,
            "duplicate_of": "a0",
        },
    )
    region = search_pb2.RegionMatch(index=2, label="shoe", box=common_pb2.Box(x1=1, y1=2, x2=3, y2=4))
    factors = {"phash": 0.1, "freshness": 0.2, "bm25": 0.3, "visual": 0.9, "region": 0.7, "in_stock": 1.0, "tags": 0.4}
    ranked = RankedHit("a", 1.5, {"visual": 0.9, "bm25": 0.3})
    hit = to_hit(Candidate(stored, factors, region), ranked)
    assert [f.name for f in hit.factors] == [f for f in FACTORS if f in factors]
    assert [f.name for f in hit.factors] == ["visual", "region", "bm25", "tags", "in_stock", "freshness", "phash"]
    assert {f.name: f.value for f in hit.factors} == pytest.approx(factors)
    assert {f.name: f.contribution for f in hit.factors} == pytest.approx(
        {"visual": 0.9, "region": 0.0, "bm25": 0.3, "tags": 0.0, "in_stock": 0.0, "freshness": 0.0, "phash": 0.0}
    )
    assert (hit.image_id, hit.score, hit.title, hit.category, hit.brand, hit.in_stock, hit.uri) == (
        "a",
        1.5,
        "Red shoe",
        "shoes",
        "b",
        True,
        "file:///a.jpg",
    )
    assert hit.price == pytest.approx(12.5)
    assert list(hit.tags) == ["red", "shoe"] and hit.taxonomy == "clothing > shoe" and hit.ocr_text == "SALE"
    assert hit.safe is False and hit.duplicate_of == "a0"
    assert hit.region == region


def test_to_hit_of_a_sparse_row():
    hit = to_hit(Candidate(StoredHit("a", 0.0, {"image_id": "a"})), RankedHit("a", 0.0, {}))
    assert hit.image_id == "a" and hit.title == "" and list(hit.tags) == [] and hit.safe is True
    assert list(hit.factors) == [] and not hit.HasField("region")


def test_search_scores_only_the_candidates_that_can_reach_the_page(pool):
    store = PagedStore(concurrent=True, size=120)  # image n: visual 1 - n / 240
    engine = QueryEngine(store, None, RankingSettings(rerank_depth=100), pool)
    ranker = Ranker("p", {"visual": 1.0, "text": 0.11})
    query = Query("image_id", visual=np.ones(4, dtype=np.float32), joint=np.ones(3, dtype=np.float32))
    hits = engine.search(query, [VisualRoute(query.visual)], ranker, TENANT, SearchFilter(), 0, 5)
    assert [h.image_id for h in hits] == [f"img-{n}" for n in range(5)]
    # The 5th best scores at least 1 - 4/240 - 0.11: an image whose visual score is below that - 0.11 cannot
    # reach it (n > 56.8), so only img-0 .. img-56 get their text similarity.
    ((space, ids),) = store.similarity_calls
    assert space == "joint" and ids == [f"img-{n}" for n in range(57)]


def test_retrieve_reports_the_routes_ceilings_and_rank_uses_them(pool):
    store = PagedStore(concurrent=True, size=120)
    engine = QueryEngine(store, None, RankingSettings(rerank_depth=100), pool)
    ceilings: dict[str, float] = {}
    query = Query("image", visual=np.ones(4, dtype=np.float32))
    fetch = engine.fetch_plan(5, profile("blended"), query.signals(), [VisualRoute(query.visual)])
    candidates = engine.retrieve([VisualRoute(query.visual)], TENANT, SearchFilter(), fetch, ceilings=ceilings)
    assert ceilings == {"visual": pytest.approx(1 - 99 / 240)}
    # A candidate no visual route found (say, from BM25) is bounded by that ceiling: it cannot reach the page.
    candidates["late"] = Candidate(StoredHit("late", 0.0, {"image_id": "late", "in_stock": True}))
    ranker = Ranker("p", {"visual": 1.0, "in_stock": 0.02})
    engine.rank(candidates, query, ranker, TENANT, 0, 5, ceilings)
    assert store.similarity_calls == []
    engine.rank(candidates, query, ranker, TENANT, 0, 5)  # no ceiling: it might score 1.0, so it is scored
    assert store.similarity_calls == [("image", ["late"])]
