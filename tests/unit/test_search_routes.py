"""How the search service runs its candidate routes: concurrently on a Milvus server, one at a time on
Milvus Lite, merged in route order either way. The store is a stand-in that records its calls."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from visearch.shared.store import SearchFilter, StoredHit
from visearch.services.ranking.service import Route, SearchService


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

    def search(self, space, vector, *, tenant, top_k, filter):
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
                                     "default", 10, SearchFilter())
    assert store.most_in_flight == (2 if concurrent else 1)
    assert set(candidates) == {"shared", "only-image", "only-region"}
    shared = candidates["shared"]
    assert shared.factors == {"visual": 0.5, "region": 0.9}
    assert shared.stored.fields["space"] == "image"  # the first route's row provides the fields
    assert shared.region is not None and shared.region.label == "dog"
