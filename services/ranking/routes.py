"""Retrieval routes: where a search's candidates come from, each route one unit.

- :class:`VisualRoute`: ANN over the global image embeddings (factor "visual");
- :class:`RegionRoute`: ANN over the indexed regions (detected objects), factor "region", with the
  matched region (and the query's box or object) on the hit;
- :class:`JointRoute`: ANN over the joint image-text vectors (factor "text");
- :class:`ColourRoute`: ANN over the colour descriptors (factor "colour");
- :class:`Bm25Route`: BM25 over linked text + OCR text: Milvus's own (the store's unified layout, one
  search returning the rows), or the ranking process's index (``text_index.py``, Milvus 2.3), whose
  candidates' rows are then read from Milvus so filters apply; with their joint vectors when the text
  factor is weighed.

Every route filters in Milvus. :func:`gather` runs the ANN routes (concurrently on a Milvus server, in
turn on Milvus Lite, whose client serialises calls) and merges their hits into candidates in route order,
so the first route that found an image provides its fields.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from visearch.services.ranking.query import Candidate
from visearch.shared.store import MilvusStore, SearchFilter, StoredHit
from visearch.v1 import common_pb2, search_pb2

if TYPE_CHECKING:
    from visearch.services.ranking.text_index import TextIndex

MAX_WINDOW = 16384  # Milvus limit on offset + limit


@dataclass(frozen=True)
class AnnRoute:
    """One ANN query of ``vector`` in the collection ``space``; its cosine becomes factor ``factor``."""

    vector: np.ndarray
    space = "image"
    factor = "visual"

    def limit(self, depth: int) -> int:
        """How many rows to ask for so that ``depth`` images come back."""
        return min(depth, MAX_WINDOW)

    def search(
        self,
        store: MilvusStore,
        tenant: str,
        depth: int,
        flt: SearchFilter,
        fields: tuple[str, ...],
        vectors: tuple[str, ...] = (),
    ) -> list[StoredHit]:
        """The route's hits, best first (with their stored vectors of ``vectors``, see ``MilvusStore.search``)."""
        return store.search(
            self.space,
            self.vector,
            tenant=tenant,
            top_k=self.limit(depth),
            filter=flt,
            output_fields=fields,
            vector_spaces=vectors,
        )

    def offer(self, candidate: Candidate, hit: StoredHit) -> None:
        """Give ``candidate`` this route's evidence from ``hit``."""
        candidate.offer(self.factor, hit.score)


class VisualRoute(AnnRoute):
    """Global visual embeddings (1280-d): the image query itself, or a framed query's main photo."""


@dataclass(frozen=True)
class RegionRoute(AnnRoute):
    """Indexed regions (one row per detected object, same space as the global embeddings).

    ``query_box`` / ``query_label``: the query's box or detected object this vector came from, reported on
    the hit's RegionMatch.
    """

    query_box: common_pb2.Box | None = None
    query_label: str = ""
    space = "region"
    factor = "region"

    def limit(self, depth: int) -> int:
        # Several regions of one image can be near the query: ask for more so `depth` images remain.
        return min(3 * depth, MAX_WINDOW)

    def offer(self, candidate: Candidate, hit: StoredHit) -> None:  # noqa: D102
        x1, y1, x2, y2 = hit.fields["box"]
        region = search_pb2.RegionMatch(
            index=int(hit.fields["region_index"]),
            label=hit.fields["label"],
            box=common_pb2.Box(x1=x1, y1=y1, x2=x2, y2=y2),
            query_label=self.query_label,
        )
        if self.query_box is not None:
            region.query_box.CopyFrom(self.query_box)
        candidate.offer(self.factor, hit.score, region)


class JointRoute(AnnRoute):
    """Joint image-text vectors (384-d, the text encoder's space): a text query, or an item's joint vector."""

    space = "joint"
    factor = "text"


class ColourRoute(AnnRoute):
    """Colour descriptors (Lab histograms): search by colour or palette."""

    space = "colour"
    factor = "colour"


def gather(
    routes: Sequence[AnnRoute],
    store: MilvusStore,
    tenant: str,
    depth: int,
    flt: SearchFilter,
    fields: tuple[str, ...],
    pool: Executor,
    ceilings: dict[str, float] | None = None,
    region_fields: tuple[str, ...] | None = None,
    region_depth: int | None = None,
    into: dict[str, Candidate] | None = None,
    vectors: tuple[str, ...] = (),
) -> dict[str, Candidate]:
    """Run the routes and merge their hits into candidates (image id -> Candidate), in route order.

    On a Milvus server (``store.concurrent``) the routes' queries overlap, so the search waits for the
    slowest, not their sum; Milvus Lite runs them in turn. Routes of one space and factor (the whole query
    image and its main photo) go to Milvus as one multi-vector search.

    ``region_fields`` / ``region_depth``: what region routes read and how many images they look for instead of
    ``fields`` / ``depth`` (their rows are per object). ``vectors``: the other spaces whose stored vectors the
    global routes read with their hits (``FetchPlan.vectors``). ``into``: known candidates the hits are merged into
    (hits of other images are dropped: the routes score these candidates, they do not add any).
    ``ceilings``, when given, receives per factor the highest value a candidate the factor's routes did not
    find can have: the lowest score they returned (an ANN route returns its best first). The ranker's
    pruning (``factor_registry.score_candidates``) uses it to skip candidates that cannot reach the page.

    On Milvus Lite with the unified layout, global routes of several spaces (a text query's joint and
    image-space vectors) are one union search (:func:`_union`).
    """
    if into is None and _one_union(routes, store):
        return _union(routes, store, tenant, depth, flt, fields, ceilings, vectors)
    batches: dict[tuple[type | int, str], list[AnnRoute]] = {}
    for route in routes:
        key = (type(route), route.space) if type(route) is VisualRoute else (id(route), route.space)
        batches.setdefault(key, []).append(route)

    def search(batch: list[AnnRoute]) -> list[list[StoredHit]]:
        region = isinstance(batch[0], RegionRoute)
        wanted = region_fields if region_fields is not None and region else fields
        images = region_depth if region_depth is not None and region else depth
        others = () if region else tuple(s for s in vectors if s != batch[0].space)
        if len(batch) == 1:
            return [batch[0].search(store, tenant, images, flt, wanted, others)]
        return store.search_many(
            batch[0].space,
            np.stack([r.vector for r in batch]),
            tenant=tenant,
            top_k=batch[0].limit(images),
            filter=flt,
            output_fields=wanted,
            vector_spaces=others,
        )

    groups = list(batches.values())
    if store.concurrent and len(groups) > 1:
        found = list(pool.map(search, groups))
    else:
        found = [search(batch) for batch in groups]
    candidates: dict[str, Candidate] = {} if into is None else into
    for batch, hit_lists in zip(groups, found):
        for route, hits in zip(batch, hit_lists):
            for hit in hits:
                if into is not None and hit.image_id not in into:
                    continue
                route.offer(candidates.setdefault(hit.image_id, Candidate(hit)), hit)
            if ceilings is not None and hits:
                ceilings[route.factor] = max(ceilings.get(route.factor, -1.0), min(h.score for h in hits))
    return candidates


def _one_union(routes: Sequence[AnnRoute], store: MilvusStore) -> bool:
    """Whether the routes are better one union search: Milvus Lite (calls run in turn, each at a fixed cost)
    and global routes of several spaces that all live on the unified layout's items row (routes of one space
    are already one multi-vector search)."""
    return (
        not store.concurrent
        and len({r.space for r in routes}) > 1
        and not any(isinstance(r, RegionRoute) for r in routes)
        and all(r.space in store.row_spaces(r.space) for r in routes)
    )


def _union(
    routes: Sequence[AnnRoute],
    store: MilvusStore,
    tenant: str,
    depth: int,
    flt: SearchFilter,
    fields: tuple[str, ...],
    ceilings: dict[str, float] | None,
    vectors: tuple[str, ...],
) -> dict[str, Candidate]:
    """The routes' candidates from one union search (``MilvusStore.search_union``): every image any route
    found, each scored by every route from its stored vectors, so each route factor is exact for all of them
    (what :func:`gather`'s separate searches leave to ``MilvusStore.similarities``). A factor's ceiling is
    its route's k-th best value: the union holds each route's top-k, so an image outside it scores no more."""
    spaces = tuple(dict.fromkeys([*(r.space for r in routes), *vectors]))
    hits = store.search_union(
        [(r.space, r.vector, r.limit(depth)) for r in routes],
        tenant=tenant,
        filter=flt,
        output_fields=fields,
        vector_spaces=spaces,
    )
    candidates = {h.image_id: Candidate(h) for h in hits}
    for route in routes:
        values = []
        for hit in hits:
            stored = hit.fields[f"{route.space}_vector"]
            if stored is None:  # no vector in this space (an image without a colour)
                continue
            value = float(np.dot(stored, route.vector))
            route.offer(candidates[hit.image_id], StoredHit(hit.image_id, value, hit.fields))
            values.append(value)
        if ceilings is not None and values:
            kth = sorted(values, reverse=True)[min(route.limit(depth), len(values)) - 1]
            ceilings[route.factor] = max(ceilings.get(route.factor, -1.0), kth)
    return candidates


@dataclass
class Bm25Matches:
    """What the BM25 route fetched: the matches' rows (filters applied) and what their scores tell.

    ``scored``: each row's ``score`` is its BM25 score (Milvus's BM25; the in-process index's rows are read
    by id and carry none). ``complete``: fewer matches than asked for came back, so every image not among
    them scores 0 (no query term).
    """

    rows: list[StoredHit]
    scored: bool = False
    complete: bool = False


@dataclass(frozen=True)
class Bm25Route:
    """The best BM25 matches of ``text`` over each image's title, description, tags and OCR text.

    ``joint``: the query's joint vector, when the text factor is weighed: the new candidates' rows are read
    with their joint vectors (from the joint collection) and get their dense text similarity at once.
    """

    text: str
    joint: np.ndarray | None = None

    def fetch(
        self,
        store: MilvusStore,
        text_index: TextIndex | None,
        tenant: str,
        depth: int,
        flt: SearchFilter,
        fields: tuple[str, ...],
        with_vectors: bool,
        exclude: Collection[str] = (),
        vectors: tuple[str, ...] = (),
    ) -> Bm25Matches:
        """The rows of the ``depth`` best BM25 matches, filters applied in Milvus (with their joint vectors when
        ``with_vectors``). ``text_index``: the in-process index, whose matches in ``exclude`` are not read; or None
        where Milvus does BM25 (``store.full_text``): one search gives the rows with their scores, and with
        their stored vectors of ``vectors`` (``FetchPlan.vectors``), so their vector factors need no other read.
        Needs no query vector, so it can run while the query text is embedded."""
        if text_index is None:
            hits = store.bm25_search(
                tenant,
                self.text,
                depth,
                flt,
                fields,
                vector_space="joint" if with_vectors else None,
                vector_spaces=vectors,
            )
            return Bm25Matches(hits, scored=True, complete=len(hits) < depth)
        found = [i for i, _ in text_index.search(tenant, self.text, depth) if i not in exclude]
        if not found:
            return Bm25Matches([])
        return Bm25Matches(
            store.rows(tenant, found, flt, space="joint", with_vector=with_vectors, output_fields=fields)
        )

    def merge(self, candidates: dict[str, Candidate], matches: Bm25Matches) -> None:
        """Add the fetched rows that no other route found; with :attr:`joint`, their "text" factor is the dot
        product of their joint vector with it. Scored matches give every candidate its raw BM25 score
        (:attr:`Candidate.bm25`), when complete the others 0, so the bm25 factor needs no other search."""
        for stored in matches.rows:
            vector = stored.fields.pop("vector", None)
            if stored.image_id not in candidates:
                candidate = candidates[stored.image_id] = Candidate(stored)
                if self.joint is not None and vector is not None:
                    candidate.factors["text"] = float(np.dot(vector, self.joint))
            if matches.scored:
                candidates[stored.image_id].bm25 = stored.score
        if matches.scored and matches.complete:
            for candidate in candidates.values():
                if candidate.bm25 is None:
                    candidate.bm25 = 0.0

    def add_to(
        self,
        candidates: dict[str, Candidate],
        store: MilvusStore,
        text_index: TextIndex | None,
        tenant: str,
        depth: int,
        flt: SearchFilter,
        fields: tuple[str, ...],
    ) -> None:
        """Add the BM25 matches not yet among ``candidates`` (:meth:`fetch`, then :meth:`merge`)."""
        self.merge(
            candidates,
            self.fetch(store, text_index, tenant, depth, flt, fields, self.joint is not None, exclude=candidates),
        )
