"""How the search service runs its candidate routes: concurrently on a Milvus server, one at a time on
Milvus Lite, merged in route order either way; how deep they fetch, and which fields they read. The
store is a stand-in that records its calls."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from visearch.shared.store import OUTPUT_FIELDS, SearchFilter, StoredHit
from visearch.services.ranking.ranker import BUILTIN_PROFILES, Ranker
from visearch.services.ranking.service import FACTOR_FIELDS, Query, Route, SearchService


class RecordingStore:
    """A store whose searches wait for each other at a barrier: with ``concurrent`` False the first
    search would wait alone, so the barrier holds only when the caller really overlaps them."""

    def __init__(self, concurrent: bool, parties: int) -> None:
        self.concurrent = concurrent
        self.barrier = threading.Barrier(parties, timeout=10) if concurrent else None
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()

    def text_rows(self, tenant):  # the BM25 index's source; unused here
        return iter(())

    def search(self, space, vector, *, tenant, top_k, filter, output_fields):
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.barrier is not None:
                self.barrier.wait()
            fields = {"image_id": "shared", "box": [0, 0, 4, 4], "region_index": 0, "label": "dog", "space": space}
            return [StoredHit("shared", 0.5 if space == "image" else 0.9, dict(fields)),
                    StoredHit(f"only-{space}", 0.4, {**fields, "image_id": f"only-{space}"})]
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.mark.parametrize("concurrent", [True, False])
def test_routes_overlap_on_a_server_and_merge_in_route_order(concurrent):
    store = RecordingStore(concurrent, parties=2)
    service = SearchService(embedding=None, store=store)
    vector = np.ones(4, dtype=np.float32)
    candidates = service._run_routes([Route("image", "visual", vector), Route("region", "region", vector)],
                                     "default", 10, SearchFilter(), FACTOR_FIELDS)
    assert store.most_in_flight == (2 if concurrent else 1)
    assert set(candidates) == {"shared", "only-image", "only-region"}
    shared = candidates["shared"]
    assert shared.factors == {"visual": 0.5, "region": 0.9}
    assert shared.stored.fields["space"] == "image"  # the first route's row provides the fields
    assert shared.region is not None and shared.region.label == "dog"


class PagedStore:
    """A store of 30 images whose searches return the factor fields asked for, and whose rows() returns
    every field; it records what each call asked."""

    concurrent = False

    def __init__(self) -> None:
        self.searches: list[tuple[int, tuple]] = []
        self.row_reads: list[list[str]] = []

    def text_rows(self, tenant):
        return iter(())

    def search(self, space, vector, *, tenant, top_k, filter, output_fields):
        self.searches.append((top_k, tuple(output_fields)))
        return [StoredHit(f"img-{n}", 1.0 - n / 100, {f: self._value(f, n) for f in output_fields})
                for n in range(min(top_k, 30))]

    def vectors(self, space, tenant, image_ids):  # every candidate came with its visual score
        assert not list(image_ids)
        return {}

    def rows(self, tenant, image_ids, filter=None, space="image", with_vector=False, output_fields=OUTPUT_FIELDS):
        ids = list(image_ids)
        self.row_reads.append(ids)
        return [StoredHit(i, 0.0, {f: self._value(f, int(i.split("-")[1])) for f in output_fields}) for i in ids]

    @staticmethod
    def _value(name: str, n: int):
        return {"image_id": f"img-{n}", "title": f"title {n}", "in_stock": True, "phash": 0, "updated_ms": 0,
                "price": 1.0, "safe": True}.get(name, "")


def test_routes_read_the_factor_fields_and_the_page_reads_the_rest():
    store = PagedStore()
    service = SearchService(embedding=None, store=store)
    ranker = Ranker("blended", BUILTIN_PROFILES["blended"])
    query = Query("image", visual=np.ones(4, dtype=np.float32))
    candidates = service._run_routes([Route("image", "visual", query.visual)], "default", 20, SearchFilter(),
                                     FACTOR_FIELDS)
    assert store.searches == [(20, FACTOR_FIELDS)]
    assert all("title" not in c.stored.fields for c in candidates.values())
    response = service._respond(candidates, query, ranker, "default", offset=2, window=5, start=0.0)
    assert store.row_reads == [["img-2", "img-3", "img-4"]]  # the page only, in one read
    assert [h.title for h in response.hits] == ["title 2", "title 3", "title 4"]


def test_a_route_that_fetches_only_the_page_reads_every_field_at_once():
    store = PagedStore()
    service = SearchService(embedding=None, store=store)
    ranker = Ranker("visual_only", BUILTIN_PROFILES["visual_only"])
    query = Query("image", visual=np.ones(4, dtype=np.float32))
    routes = [Route("image", "visual", query.visual)]
    depth, fields = service._fetch_plan(5, ranker, query, routes)
    candidates = service._run_routes(routes, "default", depth, SearchFilter(), fields)
    response = service._respond(candidates, query, ranker, "default", offset=0, window=5, start=0.0)
    assert store.searches == [(5, tuple(OUTPUT_FIELDS))]
    assert store.row_reads == []  # nothing left to read
    assert [h.title for h in response.hits] == [f"title {n}" for n in range(5)]


@pytest.mark.parametrize(("profile", "query", "routes", "depth"), [
    # Only the route's own similarity is weighed: the ANN order is final, the page is enough.
    ("visual_only", Query("image", visual=np.ones(4)), [Route("image", "visual", np.ones(4))], 10),
    ("visual_only", Query("text", joint=np.ones(4), text="red"), [Route("joint", "text", np.ones(4))], 10),
    # A second factor can reorder: the rerank window.
    ("visual_only", Query("image_id", visual=np.ones(4), joint=np.ones(4)), [Route("image", "visual", np.ones(4))], 100),
    ("blended", Query("image", visual=np.ones(4)), [Route("image", "visual", np.ones(4))], 100),
    ("colour", Query("colour", colour=np.ones(4)), [Route("colour", "colour", np.ones(4))], 100),
    ("visual_only", Query("image", visual=np.ones(4)),
     [Route("image", "visual", np.ones(4)), Route("region", "region", np.ones(4))], 100),
])
def test_rerank_depth_follows_what_the_ranker_weighs(profile, query, routes, depth):
    service = SearchService(embedding=None, store=PagedStore())
    fetched, fields = service._fetch_plan(10, Ranker(profile, BUILTIN_PROFILES[profile]), query, routes)
    assert (fetched, fields) == (depth, tuple(OUTPUT_FIELDS) if depth == 10 else FACTOR_FIELDS)


def test_a_negative_weight_on_the_route_factor_keeps_the_window():
    service = SearchService(embedding=None, store=PagedStore())
    ranker = Ranker("odd", {"visual": -1.0})
    routes = [Route("image", "visual", np.ones(4))]
    assert service._fetch_plan(10, ranker, Query("image", visual=np.ones(4)), routes)[0] == 100
