"""The factor registry: every ranking factor, the query signal it needs, the stored fields it reads, its scorer.

A factor is computed for a candidate only when the ranker weighs it and the query holds its signal. Four
kinds of scorer:

- vector (visual, text, colour): cosine of the query's vector(s) with the candidate's stored vector in
  ``space``; a route over that space already gave it for the candidates it found, the vectors a route read
  with its hits give it here (the unified store layout keeps them on one row), and Milvus computes the
  others' in one search restricted to their ids (``MilvusStore.similarities``);
- route (region): only a route gives it (the best of the candidate's regions);
- per candidate (tags, taxonomy, phash, in_stock, freshness, preference): a function of the query and the candidate's
  stored fields, which the routes read with the candidates (:func:`route_fields`);
- batch (bm25): scored over the whole candidate list (BM25 is divided by the best candidate's).

Value ranges: see FactorScore in protos/visearch/v1/search.proto.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from visearch.services.ranking.factors import (
    freshness,
    hit_tags,
    phash_similarity,
    tag_overlap,
    taxonomy_agreement,
)
from visearch.services.ranking.personalisation import CONCEPT_FIELDS, preference_of
from visearch.services.ranking.query import Candidate, Query
from visearch.services.ranking.ranker import FACTORS, Ranker

if TYPE_CHECKING:
    from visearch.services.ranking.text_index import TextIndex
    from visearch.shared.store import MilvusStore


@dataclass(frozen=True)
class ScoringContext:
    """What scorers may read beyond the query and the candidate: the store and BM25 index of the tenant."""

    store: MilvusStore  # vectors by id
    text_index: TextIndex | None  # BM25 scores; None where Milvus does BM25 (store.full_text)
    tenant: str
    freshness_half_life_days: float = 30.0
    now_ms: int = 0


@dataclass(frozen=True)
class Factor:
    """One ranking factor.

    Args:
        name: as in :data:`~visearch.services.ranking.ranker.FACTORS` and FactorScore.name.
        signal: the :class:`Query` attribute it compares with (None: the candidate alone).
        fields: the stored scalar fields its scorer reads.
        space: a vector factor's collection (image, joint, colour): cosine with the candidate's vector.
        scorer: a per-candidate factor: ``scorer(query, fields, context) -> float``.
        batch_scorer: a factor of the whole list: ``batch_scorer(query, candidates, context) -> {id: value}``.
        query_vectors: a vector factor's query vectors (default: the ``signal`` attribute alone); the
            candidate keeps the best cosine over them.
    """

    name: str
    signal: str | None = None
    fields: tuple[str, ...] = ()
    space: str | None = None
    scorer: Callable[[Query, Mapping[str, Any], ScoringContext], float] | None = None
    batch_scorer: Callable[[Query, dict[str, Candidate], ScoringContext], dict[str, float]] | None = None
    query_vectors: Callable[[Query], list[np.ndarray | None]] | None = None

    def vectors_of(self, query: Query) -> list[np.ndarray]:
        """The query vectors of a vector factor (the ones the query holds)."""
        if self.query_vectors is not None:
            return [v for v in self.query_vectors(query) if v is not None]
        assert self.signal is not None, f"factor {self.name} compares no query signal"
        value = getattr(query, self.signal)
        return [value] if value is not None else []


def _bm25(query: Query, candidates: dict[str, Candidate], ctx: ScoringContext) -> dict[str, float]:
    if ctx.text_index is None:  # Milvus's BM25: the route's scores, else one search restricted to the candidates
        known = {i: c.bm25 for i, c in candidates.items() if c.bm25 is not None}
        raw = (
            known if len(known) == len(candidates) else ctx.store.bm25_scores(ctx.tenant, query.text, list(candidates))
        )
    else:
        index_ids, scores = ctx.text_index.scores(ctx.tenant, query.text)
        position = {i: n for n, i in enumerate(index_ids)}
        raw = {i: float(scores[position[i]]) if i in position else 0.0 for i in candidates}
    best = max(raw.values(), default=0.0)
    return {i: value / best if best > 0 else 0.0 for i, value in raw.items()}


REGISTRY: dict[str, Factor] = {
    f.name: f
    for f in (
        # The whole query image's embedding and, for a framed query, its main photo's: the better cosine counts.
        Factor("visual", "visual", space="image", query_vectors=lambda q: [q.visual, q.main_visual]),
        Factor("region", "visual"),  # route only: the best of the candidate's regions against the query
        Factor("text", "joint", space="joint"),
        Factor("bm25", "text", batch_scorer=_bm25),
        Factor("tags", "tags", ("tags", "attributes"), scorer=lambda q, f, _: tag_overlap(q.tags, hit_tags(f))),
        Factor(
            "taxonomy",
            "taxonomy",
            ("taxonomy",),
            scorer=lambda q, f, _: taxonomy_agreement(q.taxonomy, f.get("taxonomy", "")),
        ),
        Factor("colour", "colour", space="colour"),
        Factor("in_stock", None, ("in_stock",), scorer=lambda q, f, _: 1.0 if f.get("in_stock", False) else 0.0),
        Factor(
            "freshness",
            None,
            ("updated_ms",),
            scorer=lambda q, f, ctx: freshness(int(f.get("updated_ms") or 0), ctx.now_ms, ctx.freshness_half_life_days),
        ),
        Factor(
            "phash", "phash", ("phash",), scorer=lambda q, f, _: phash_similarity(q.phash, int(f.get("phash") or 0))
        ),
        Factor("exact", None),  # set by the exact-match verifier (SimilarTo exact_only)
        # The candidate's concepts against the requesting user's profile (weighed for personalised requests only).
        Factor("preference", None, CONCEPT_FIELDS, scorer=lambda q, f, _: preference_of(f)),
    )
}
if tuple(REGISTRY) != FACTORS:  # the ranker validates weights against FACTORS; the hits list factors in its order
    raise ImportError("factor_registry.REGISTRY and ranker.FACTORS must list the same factors in the same order")


def weighed(ranker: Ranker, signals: Collection[str]) -> list[Factor]:
    """The factors worth computing: weighed by ``ranker`` and supported by the query's ``signals``
    (``Query.signals()``, or the signals a plan expects)."""
    return [f for f in REGISTRY.values() if ranker.active(f.name) and (f.signal is None or f.signal in signals)]


def route_fields(ranker: Ranker, signals: Collection[str]) -> tuple[str, ...]:
    """The stored fields a route reads with each candidate of a rerank window: ``image_id`` and what the
    weighed factors' scorers read (the returned page reads the rest once ranked)."""
    fields = ["image_id"]
    for factor in weighed(ranker, signals):
        fields += [f for f in factor.fields if f not in fields]
    return tuple(fields)


# Each factor's value range (FactorScore in protos/visearch/v1/search.proto): cosines in [-1, 1] (colour
# descriptors are non-negative, so their cosine is in [0, 1]), every other factor in [0, 1].
VALUE_RANGES: dict[str, tuple[float, float]] = {name: (-1.0, 1.0) for name in ("visual", "region", "text")}
VALUE_RANGES.update({name: (0.0, 1.0) for name in FACTORS if name not in VALUE_RANGES})


def score_candidates(
    candidates: dict[str, Candidate],
    query: Query,
    ranker: Ranker,
    ctx: ScoringContext,
    keep: int | None = None,
    ceilings: Mapping[str, float] | None = None,
) -> dict[str, Candidate]:
    """Give every candidate each factor the ranker weighs and the query supports; returns the candidates.

    The factors of the candidates' own fields and of the whole list (BM25) come first. With ``keep`` (the
    page's end, offset + top_k) and a linear blend, the candidates that cannot reach the first ``keep`` hits
    whatever their missing factors turn out to be are then dropped (threshold pruning, as Fagin's threshold
    algorithm: a candidate's score is bounded by each missing factor's value range, or by the ``ceilings``
    its routes give), so the vector factors that the routes did not give are computed for fewer candidates,
    often none; Milvus computes them in one search restricted to their ids per space
    (``MilvusStore.similarities``). The returned candidates rank exactly as all of them would on the page.
    """
    if not candidates:
        return candidates
    ctx = (
        ctx
        if ctx.now_ms
        else ScoringContext(
            ctx.store, ctx.text_index, ctx.tenant, ctx.freshness_half_life_days, int(time.time() * 1000)
        )
    )
    factors = weighed(ranker, query.signals())
    for factor in factors:
        if factor.batch_scorer is not None:
            for image_id, value in factor.batch_scorer(query, candidates, ctx).items():
                candidates[image_id].factors[factor.name] = value
        elif factor.scorer is not None:
            for c in candidates.values():
                c.factors[factor.name] = factor.scorer(query, c.stored.fields, ctx)
    vector_factors = [f for f in factors if f.space is not None and f.vectors_of(query)]
    for factor in vector_factors:  # the vectors a route read with its hits (FetchPlan.vectors): scored here
        queries, key = np.stack(factor.vectors_of(query)), f"{factor.space}_vector"
        for c in candidates.values():
            if factor.name in c.factors or key not in c.stored.fields:
                continue
            if c.stored.fields[key] is None:  # the image has no vector in that space (no colour)
                c.absent.add(factor.name)
            else:
                c.factors[factor.name] = float(np.max(queries @ c.stored.fields[key]))
    if keep is not None and ranker.fusion == "blend":
        candidates = _prune(candidates, ranker, vector_factors, keep, ceilings or {})
    for factor in vector_factors:
        missing = [i for i, c in candidates.items() if factor.name not in c.factors and factor.name not in c.absent]
        if not missing:
            continue
        assert factor.space is not None  # a vector factor's
        for image_id, value in ctx.store.similarities(
            factor.space, ctx.tenant, missing, factor.vectors_of(query)
        ).items():
            candidates[image_id].factors[factor.name] = value
    return candidates


def _prune(
    candidates: dict[str, Candidate], ranker: Ranker, pending: list[Factor], keep: int, ceilings: Mapping[str, float]
) -> dict[str, Candidate]:
    """The candidates whose best possible blended score reaches the ``keep``-th best worst possible score."""
    if len(candidates) <= keep or not pending:
        return candidates
    bounds = {}
    for image_id, c in candidates.items():
        low = high = ranker.bias + sum(ranker.weights.get(f, 0.0) * v for f, v in c.factors.items())
        for factor in pending:
            if factor.name in c.factors:
                continue
            lo, hi = VALUE_RANGES[factor.name]
            hi = min(hi, ceilings.get(factor.name, hi))
            lo, hi = min(lo, 0.0), max(hi, 0.0)  # a value that cannot be found counts 0
            w = ranker.weights.get(factor.name, 0.0)
            low, high = low + min(w * lo, w * hi), high + max(w * lo, w * hi)
        bounds[image_id] = (low, high)
    threshold = sorted((low for low, _ in bounds.values()), reverse=True)[keep - 1]
    return {i: c for i, c in candidates.items() if bounds[i][1] >= threshold}
