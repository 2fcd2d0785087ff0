"""Retrieval routes (services/ranking/routes.py): how :func:`gather` runs the ANN routes (concurrently on a
Milvus server, one at a time on Milvus Lite), merges their hits in route order, batches the whole query
image and its main photo into one multi-vector search; how deep a region route asks; how the BM25 route
adds its candidates. The stores are stand-ins that record their calls."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from visearch.services.ranking.factor_registry import REGISTRY, ScoringContext
from visearch.services.ranking.query import Candidate, Query
from visearch.services.ranking.routes import (
    MAX_WINDOW,
    AnnRoute,
    Bm25Matches,
    Bm25Route,
    ColourRoute,
    JointRoute,
    RegionRoute,
    VisualRoute,
    gather,
)
from visearch.shared.store import SearchFilter, StoredHit
from visearch.v1 import common_pb2

TENANT = "default"
FIELDS = ("image_id", "in_stock")


def _region_fields(image_id: str, space: str, label: str = "dog", index: int = 0) -> dict:
    return {"image_id": image_id, "box": [0, 0, 4, 4], "region_index": index, "label": label, "space": space}


class RecordingStore:
    """A store whose searches wait for each other at a barrier: with ``concurrent`` False the first search
    would wait alone, so the barrier holds only when the caller really overlaps them. Serial searches sleep
    a little so that calls overlapping by mistake would be seen in ``most_in_flight``."""

    def __init__(self, concurrent: bool, parties: int) -> None:
        self.concurrent = concurrent
        self.barrier = threading.Barrier(parties, timeout=5) if concurrent else None
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        self.calls: list[tuple] = []

    def _enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.barrier is not None:
            self.barrier.wait()
        else:
            time.sleep(0.02)

    def _leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def _hits(self, space: str) -> list[StoredHit]:
        return [
            StoredHit("shared", 0.5 if space == "image" else 0.9, _region_fields("shared", space)),
            StoredHit(f"only-{space}", 0.4, _region_fields(f"only-{space}", space)),
        ]

    def search(self, space, vector, *, tenant, top_k, filter, output_fields, vector_spaces=()):
        self.calls.append(("search", space, top_k, tuple(output_fields)))
        self._enter()
        try:
            return self._hits(space)
        finally:
            self._leave()

    def search_many(self, space, vectors, *, tenant, top_k, filter, output_fields, vector_spaces=()):
        self.calls.append(("search_many", space, top_k, tuple(output_fields)))
        self._enter()
        try:
            return [self._hits(space) for _ in vectors]
        finally:
            self._leave()


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


@pytest.mark.parametrize("concurrent", [True, False])
def test_routes_overlap_on_a_server_and_merge_in_route_order(concurrent, pool):
    store = RecordingStore(concurrent, parties=2)
    vector = np.ones(4, dtype=np.float32)
    candidates = gather([VisualRoute(vector), RegionRoute(vector)], store, TENANT, 10, SearchFilter(), FIELDS, pool)
    assert store.most_in_flight == (2 if concurrent else 1)
    assert set(candidates) == {"shared", "only-image", "only-region"}
    shared = candidates["shared"]
    assert shared.factors == {"visual": 0.5, "region": 0.9}
    assert shared.stored.fields["space"] == "image"  # the first route's row provides the fields
    assert shared.region is not None and shared.region.label == "dog"
    assert candidates["only-image"].factors == {"visual": 0.4} and candidates["only-image"].region is None
    assert candidates["only-region"].factors == {"region": 0.4}


def test_the_first_route_provides_the_fields_in_any_route_order(pool):
    store = RecordingStore(False, parties=1)
    vector = np.ones(4, dtype=np.float32)
    candidates = gather([RegionRoute(vector), VisualRoute(vector)], store, TENANT, 10, SearchFilter(), FIELDS, pool)
    assert candidates["shared"].stored.fields["space"] == "region"
    assert [c[1] for c in store.calls] == ["region", "image"]  # in route order


class ScriptedStore:
    """A serial store that answers each space's search with given hits, recording every call."""

    concurrent = False

    def __init__(
        self, hits: dict[str, list[StoredHit]] | None = None, many: dict[str, list[list[StoredHit]]] | None = None
    ) -> None:
        self.hits, self.many = hits or {}, many or {}
        self.calls: list[dict] = []

    def row_spaces(self, space):  # per_space: one vector per row, so no union search
        return ()

    def search(self, space, vector, *, tenant, top_k, filter, output_fields, vector_spaces=()):
        self.calls.append(
            {
                "method": "search",
                "space": space,
                "vector": np.asarray(vector),
                "top_k": top_k,
                "tenant": tenant,
                "filter": filter,
                "fields": tuple(output_fields),
            }
        )
        return [StoredHit(h.image_id, h.score, dict(h.fields)) for h in self.hits.get(space, [])]

    def search_many(self, space, vectors, *, tenant, top_k, filter, output_fields, vector_spaces=()):
        self.calls.append(
            {
                "method": "search_many",
                "space": space,
                "vectors": np.asarray(vectors),
                "top_k": top_k,
                "tenant": tenant,
                "filter": filter,
                "fields": tuple(output_fields),
            }
        )
        return [[StoredHit(h.image_id, h.score, dict(h.fields)) for h in hits] for hits in self.many[space]]


def test_each_factor_keeps_its_best_value_and_the_region_of_its_best_match(pool):
    # Two regions of one image match: the better one wins whichever comes first.
    store = ScriptedStore(
        hits={
            "region": [
                StoredHit("a", 0.6, _region_fields("a", "region", "cat", 1)),
                StoredHit("a", 0.9, _region_fields("a", "region", "dog", 2)),
                StoredHit("b", 0.8, _region_fields("b", "region", "hat", 0)),
                StoredHit("b", 0.3, _region_fields("b", "region", "shoe", 3)),
            ]
        }
    )
    candidates = gather([RegionRoute(np.ones(4))], store, TENANT, 10, SearchFilter(), FIELDS, pool)
    assert candidates["a"].factors == {"region": 0.9}
    assert (candidates["a"].region.label, candidates["a"].region.index) == ("dog", 2)
    assert candidates["b"].factors == {"region": 0.8}
    assert (candidates["b"].region.label, candidates["b"].region.index) == ("hat", 0)


def test_a_region_route_puts_the_matched_region_on_the_candidate(pool):
    store = ScriptedStore(
        hits={
            "region": [
                StoredHit(
                    "a", 0.7, {"image_id": "a", "box": [10.0, 20.0, 110.0, 220.0], "region_index": 3, "label": "bag"}
                )
            ]
        }
    )
    query_box = common_pb2.Box(x1=1, y1=2, x2=30, y2=40)
    route = RegionRoute(np.ones(4), query_box=query_box, query_label="handbag")
    candidates = gather([route], store, TENANT, 10, SearchFilter(), FIELDS, pool)
    region = candidates["a"].region
    assert region.index == 3 and region.label == "bag"
    assert (region.box.x1, region.box.y1, region.box.x2, region.box.y2) == (10, 20, 110, 220)
    assert region.query_box == query_box
    assert region.query_label == "handbag"
    assert candidates["a"].factors == {"region": 0.7}
    # Without a query box the match carries none.
    plain = gather([RegionRoute(np.ones(4))], store, TENANT, 10, SearchFilter(), FIELDS, pool)["a"].region
    assert not plain.HasField("query_box") and plain.query_label == ""


def test_the_whole_image_and_its_main_photo_go_to_milvus_as_one_search(pool):
    whole, main = np.array([1, 0, 0, 0], dtype=np.float32), np.array([0, 1, 0, 0], dtype=np.float32)
    store = ScriptedStore(
        many={
            "image": [
                [
                    StoredHit("a", 0.3, {"image_id": "a", "row": "whole"}),
                    StoredHit("b", 0.7, {"image_id": "b", "row": "whole"}),
                ],
                [
                    StoredHit("a", 0.8, {"image_id": "a", "row": "main"}),
                    StoredHit("b", 0.2, {"image_id": "b", "row": "main"}),
                    StoredHit("c", 0.1, {"image_id": "c", "row": "main"}),
                ],
            ]
        }
    )
    flt = SearchFilter(categories=["shoes"])
    candidates = gather([VisualRoute(whole), VisualRoute(main)], store, TENANT, 25, flt, FIELDS, pool)
    assert len(store.calls) == 1
    (call,) = store.calls
    assert call["method"] == "search_many" and call["space"] == "image"
    np.testing.assert_array_equal(call["vectors"], np.stack([whole, main]))
    assert (call["top_k"], call["tenant"], call["filter"], call["fields"]) == (25, TENANT, flt, FIELDS)
    assert {i: c.factors for i, c in candidates.items()} == {
        "a": {"visual": 0.8},
        "b": {"visual": 0.7},
        "c": {"visual": 0.1},
    }
    assert candidates["a"].stored.fields["row"] == "whole"  # the first route's row, though the second scored better


def test_visual_routes_batch_beside_a_region_route(pool):
    store = RecordingStore(True, parties=2)  # two groups: the visual batch and the region route, overlapping
    vector = np.ones(4, dtype=np.float32)
    candidates = gather(
        [VisualRoute(vector), RegionRoute(vector), VisualRoute(vector)], store, TENANT, 10, SearchFilter(), FIELDS, pool
    )
    assert sorted((c[0], c[1]) for c in store.calls) == [("search", "region"), ("search_many", "image")]
    assert store.most_in_flight == 2
    assert candidates["shared"].factors == {"visual": 0.5, "region": 0.9}


def test_two_region_routes_are_two_searches(pool):
    store = ScriptedStore(hits={"region": [StoredHit("a", 0.5, _region_fields("a", "region"))]})
    gather(
        [RegionRoute(np.ones(4), query_label="x"), RegionRoute(np.ones(4), query_label="y")],
        store,
        TENANT,
        10,
        SearchFilter(),
        FIELDS,
        pool,
    )
    assert [c["method"] for c in store.calls] == ["search", "search"]


def test_a_region_route_asks_for_three_times_the_depth_up_to_the_milvus_limit(pool):
    route = RegionRoute(np.ones(4))
    assert route.limit(10) == 30
    assert route.limit(5461) == 16383
    assert route.limit(5462) == MAX_WINDOW == 16384
    assert route.limit(MAX_WINDOW) == MAX_WINDOW
    for other in (VisualRoute(np.ones(4)), JointRoute(np.ones(4)), ColourRoute(np.ones(4))):
        assert other.limit(10) == 10 and other.limit(MAX_WINDOW + 1) == MAX_WINDOW
    store = ScriptedStore()
    gather([route], store, TENANT, 40, SearchFilter(), FIELDS, pool)
    assert store.calls[0]["top_k"] == 120


@pytest.mark.parametrize(
    ("route", "space", "factor"),
    [
        (VisualRoute(np.ones(4)), "image", "visual"),
        (RegionRoute(np.ones(4)), "region", "region"),
        (JointRoute(np.ones(4)), "joint", "text"),
        (ColourRoute(np.ones(4)), "colour", "colour"),
    ],
)
def test_each_route_searches_its_space_for_its_factor(route, space, factor, pool):
    assert isinstance(route, AnnRoute)
    assert (route.space, route.factor) == (space, factor)
    store = ScriptedStore(hits={space: [StoredHit("a", 0.25, _region_fields("a", space))]})
    candidates = gather([route], store, TENANT, 7, SearchFilter(), FIELDS, pool)
    assert store.calls[0]["space"] == space
    assert candidates["a"].factors == {factor: 0.25}


class FakeTextIndex:
    def __init__(self, found: list[tuple[str, float]]) -> None:
        self.found = found
        self.calls: list[tuple] = []

    def search(self, tenant, text, depth):
        self.calls.append((tenant, text, depth))
        return self.found[:depth]


class RowStore:
    """rows() from a table of joint vectors; ``hidden`` ids do not pass the filter."""

    def __init__(self, vectors: dict[str, np.ndarray], hidden: frozenset = frozenset()) -> None:
        self.vectors, self.hidden = vectors, hidden
        self.calls: list[dict] = []

    def rows(self, tenant, image_ids, filter=None, space="image", with_vector=False, output_fields=()):
        ids = list(image_ids)
        self.calls.append(
            {
                "tenant": tenant,
                "ids": ids,
                "filter": filter,
                "space": space,
                "with_vector": with_vector,
                "fields": tuple(output_fields),
            }
        )
        out = []
        for i in ids:
            if i in self.hidden:
                continue
            fields = {"image_id": i, "title": f"title {i}"}
            if with_vector:
                fields["vector"] = self.vectors[i].tolist()
            out.append(StoredHit(i, 0.0, fields))
        return out


def _existing(*ids: str) -> dict[str, Candidate]:
    return {i: Candidate(StoredHit(i, 0.9, {"image_id": i, "title": "from a route"}), {"visual": 0.9}) for i in ids}


def test_bm25_adds_only_new_ids_with_their_dense_text_similarity():
    joint = np.array([0.6, 0.8, 0.0], dtype=np.float32)
    vectors = {"b": np.array([1.0, 0.0, 0.0]), "c": np.array([0.0, 1.0, 0.0]), "d": np.array([0.0, 0.0, 1.0])}
    store, index = (
        RowStore(vectors, hidden=frozenset({"d"})),
        FakeTextIndex([("a", 5.0), ("b", 4.0), ("c", 3.0), ("d", 2.0)]),
    )
    candidates = _existing("a")
    flt = SearchFilter(in_stock=True)
    Bm25Route("red shoe", joint).add_to(candidates, store, index, TENANT, 50, flt, FIELDS)
    assert index.calls == [(TENANT, "red shoe", 50)]
    (call,) = store.calls
    assert call == {
        "tenant": TENANT,
        "ids": ["b", "c", "d"],
        "filter": flt,
        "space": "joint",
        "with_vector": True,
        "fields": FIELDS,
    }
    assert set(candidates) == {"a", "b", "c"}  # d did not pass the filter
    assert candidates["a"].factors == {"visual": 0.9}  # an existing candidate is left alone
    assert candidates["a"].stored.fields["title"] == "from a route"
    assert candidates["b"].factors == pytest.approx({"text": 0.6})
    assert candidates["c"].factors == pytest.approx({"text": 0.8})
    assert "vector" not in candidates["b"].stored.fields  # the vector was for the factor, not the hit
    assert candidates["b"].stored.fields["title"] == "title b"


def test_bm25_without_a_joint_vector_reads_rows_without_vectors():
    store, index = RowStore({}), FakeTextIndex([("b", 4.0)])
    candidates: dict[str, Candidate] = {}
    Bm25Route("red shoe").add_to(candidates, store, index, TENANT, 10, SearchFilter(), FIELDS)
    assert store.calls[0]["with_vector"] is False and store.calls[0]["space"] == "joint"
    assert candidates["b"].factors == {}


def test_bm25_with_nothing_new_reads_no_rows():
    store, index = RowStore({}), FakeTextIndex([("a", 5.0)])
    candidates = _existing("a")
    Bm25Route("red", np.ones(3)).add_to(candidates, store, index, TENANT, 10, SearchFilter(), FIELDS)
    assert store.calls == []
    Bm25Route("red", np.ones(3)).add_to(candidates, store, FakeTextIndex([]), TENANT, 10, SearchFilter(), FIELDS)
    assert store.calls == [] and set(candidates) == {"a"}


def test_region_routes_read_their_own_fields(pool):
    store = ScriptedStore(
        hits={
            "region": [StoredHit("a", 0.5, _region_fields("a", "region"))],
            "image": [StoredHit("a", 0.4, {"image_id": "a"})],
        }
    )
    everything, factors_only = ("image_id", "in_stock", "title", "uri"), ("image_id", "in_stock")
    gather(
        [VisualRoute(np.ones(4)), RegionRoute(np.ones(4))],
        store,
        TENANT,
        10,
        SearchFilter(),
        everything,
        pool,
        region_fields=factors_only,
    )
    assert {c["space"]: c["fields"] for c in store.calls} == {"image": everything, "region": factors_only}
    store.calls.clear()
    gather([VisualRoute(np.ones(4)), RegionRoute(np.ones(4))], store, TENANT, 10, SearchFilter(), everything, pool)
    assert {c["space"]: c["fields"] for c in store.calls} == {"image": everything, "region": everything}


def test_ceilings_receive_each_factors_lowest_returned_score(pool):
    store = ScriptedStore(
        hits={
            "region": [
                StoredHit("a", 0.9, _region_fields("a", "region")),
                StoredHit("b", 0.35, _region_fields("b", "region")),
            ],
            "colour": [],
        },
        many={
            "image": [
                [StoredHit("a", 0.8, {"image_id": "a"}), StoredHit("b", 0.6, {"image_id": "b"})],
                [StoredHit("c", 0.7, {"image_id": "c"}), StoredHit("a", 0.65, {"image_id": "a"})],
            ]
        },
    )
    ceilings: dict[str, float] = {}
    gather(
        [VisualRoute(np.ones(4)), VisualRoute(np.ones(4)), RegionRoute(np.ones(4)), ColourRoute(np.ones(4))],
        store,
        TENANT,
        10,
        SearchFilter(),
        FIELDS,
        pool,
        ceilings,
    )
    # An image neither visual route found scores at most the better of their lowest scores (0.6 and 0.65).
    assert ceilings == {"visual": 0.65, "region": 0.35}  # a route without hits bounds nothing
    # A later retrieval into the same dict keeps the higher bound.
    later = ScriptedStore(hits={"image": [StoredHit("d", 0.62, {"image_id": "d"})]})
    gather([VisualRoute(np.ones(4))], later, TENANT, 10, SearchFilter(), FIELDS, pool, ceilings)
    assert ceilings["visual"] == 0.65
    gather(
        [VisualRoute(np.ones(4))],
        ScriptedStore(hits={"image": [StoredHit("e", 0.7, {"image_id": "e"})]}),
        TENANT,
        10,
        SearchFilter(),
        FIELDS,
        pool,
        ceilings,
    )
    assert ceilings["visual"] == 0.7


def test_region_routes_look_for_their_own_number_of_images(pool):
    store = ScriptedStore(many={"image": [[], []]})
    gather(
        [VisualRoute(np.ones(4)), VisualRoute(np.ones(4)), RegionRoute(np.ones(4)), JointRoute(np.ones(4))],
        store,
        TENANT,
        30,
        SearchFilter(),
        FIELDS,
        pool,
        region_depth=10,
    )
    assert {c["space"]: c["top_k"] for c in store.calls} == {"image": 30, "region": 30, "joint": 30}  # region: 3 x 10
    store.calls.clear()
    gather([RegionRoute(np.ones(4))], store, TENANT, 30, SearchFilter(), FIELDS, pool)
    assert store.calls[0]["top_k"] == 90  # by default the same depth as the others


def test_bm25_fetch_needs_no_query_vector_and_reads_the_rows_it_is_asked_for():
    vectors = {"b": np.array([1.0, 0.0, 0.0]), "c": np.array([0.0, 1.0, 0.0])}
    store, index = RowStore(vectors), FakeTextIndex([("a", 5.0), ("b", 4.0), ("c", 3.0)])
    flt = SearchFilter(brands=["x"])
    rows = Bm25Route("red shoe").fetch(store, index, TENANT, 20, flt, FIELDS, True, exclude={"a"}).rows
    assert index.calls == [(TENANT, "red shoe", 20)]
    assert store.calls == [
        {"tenant": TENANT, "ids": ["b", "c"], "filter": flt, "space": "joint", "with_vector": True, "fields": FIELDS}
    ]
    assert [r.image_id for r in rows] == ["b", "c"] and "vector" in rows[0].fields
    Bm25Route("red shoe").fetch(store, index, TENANT, 20, flt, FIELDS, False)
    assert store.calls[-1]["ids"] == ["a", "b", "c"] and store.calls[-1]["with_vector"] is False
    assert (
        Bm25Route("red").fetch(store, FakeTextIndex([("a", 1.0)]), TENANT, 20, flt, FIELDS, True, exclude={"a"}).rows
        == []
    )
    assert len(store.calls) == 2  # nothing to read: no call


def test_bm25_merge_adds_the_rows_no_other_route_found():
    joint = np.array([0.6, 0.8, 0.0], dtype=np.float32)
    rows = [
        StoredHit("a", 0.0, {"image_id": "a", "title": "bm25 a", "vector": [1.0, 0.0, 0.0]}),
        StoredHit("b", 0.0, {"image_id": "b", "title": "bm25 b", "vector": [0.0, 1.0, 0.0]}),
        StoredHit("c", 0.0, {"image_id": "c", "title": "bm25 c"}),
    ]  # read without its vector
    candidates = _existing("a")
    Bm25Route("red", joint).merge(candidates, Bm25Matches(rows))
    assert set(candidates) == {"a", "b", "c"}
    assert candidates["a"].stored.fields["title"] == "from a route" and candidates["a"].factors == {"visual": 0.9}
    assert candidates["b"].factors == pytest.approx({"text": 0.8})
    assert candidates["c"].factors == {}
    assert all("vector" not in c.stored.fields for c in candidates.values())
    # Without the query's joint vector (the text factor not weighed) no text factor is set.
    plain = {}
    Bm25Route("red").merge(plain, Bm25Matches([StoredHit("d", 0.0, {"image_id": "d", "vector": [1.0, 0.0, 0.0]})]))
    assert plain["d"].factors == {} and "vector" not in plain["d"].stored.fields


class ScoringStore:
    """bm25_search as Milvus answers it (scored rows) and bm25_scores, recording the calls."""

    def __init__(self, hits: list[tuple[str, float]]) -> None:
        self.hits, self.calls = hits, []

    def bm25_search(
        self, tenant, text, top_k, filter=None, output_fields=(), vector_space=None, image_ids=(), vector_spaces=()
    ):
        self.calls.append(("bm25_search", top_k, vector_space))
        return [StoredHit(i, s, {"image_id": i, "vector": [1.0, 0.0, 0.0]}) for i, s in self.hits[:top_k]]

    def bm25_scores(self, tenant, text, image_ids):
        self.calls.append(("bm25_scores", tuple(image_ids)))
        return {i: dict(self.hits).get(i, 0.0) for i in image_ids}


def test_milvus_bm25_matches_carry_their_scores_and_spare_the_factor_a_search():
    """Where Milvus does BM25 (no in-process index) one search gives the rows and their scores; every candidate,
    old or new, gets its raw score, and when fewer matches than asked came back the others score 0: the bm25
    factor is computed without another search."""
    store = ScoringStore([("a", 6.0), ("b", 3.0)])
    candidates = _existing("a", "z")
    Bm25Route("red", np.array([1.0, 0.0, 0.0])).add_to(candidates, store, None, TENANT, 10, SearchFilter(), FIELDS)
    assert store.calls == [("bm25_search", 10, "joint")]
    assert {i: c.bm25 for i, c in candidates.items()} == {"a": 6.0, "z": 0.0, "b": 3.0}
    assert candidates["b"].factors == {"text": 1.0} and candidates["a"].factors == {"visual": 0.9}
    scores = REGISTRY["bm25"].batch_scorer(Query("text", text="red"), candidates, ScoringContext(store, None, TENANT))
    assert scores == {"a": 1.0, "z": 0.0, "b": 0.5} and len(store.calls) == 1


def test_incomplete_milvus_bm25_matches_leave_the_factor_one_restricted_search():
    """As many matches as asked for: an image not among them may still match, so the factor scores every
    candidate in one search restricted to them (one scale for all)."""
    store = ScoringStore([("a", 6.0), ("b", 3.0)])
    candidates = _existing("z")
    Bm25Route("red").add_to(candidates, store, None, TENANT, 2, SearchFilter(), FIELDS)
    assert candidates["z"].bm25 is None and candidates["a"].bm25 == 6.0
    scores = REGISTRY["bm25"].batch_scorer(Query("text", text="red"), candidates, ScoringContext(store, None, TENANT))
    assert store.calls[-1] == ("bm25_scores", ("z", "a", "b")) and scores == {"z": 0.0, "a": 1.0, "b": 0.5}
