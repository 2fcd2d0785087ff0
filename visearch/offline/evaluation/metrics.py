"""Ranking metrics of one query's ranked list against graded relevance judgments, and their means.

A ranked list is image ids, best first; judgments map image id -> grade (> 0: relevant; 0 or absent:
not relevant). Every relevant item counts, retrieved or not, so a list that misses relevant items
is penalised (recall, AP and nDCG use the judged total, not what the list happens to contain).

- precision@k: relevant items in the first k / k;
- recall@k: relevant items in the first k / all relevant items;
- average precision (AP): mean of precision@i over the ranks i of relevant items, divided by the number
  of relevant items (missing ones contribute 0; Manning et al., Introduction to IR, 8.4). With
  ``depth`` (the list cut at that rank), the divisor is min(relevant, depth): "AP@depth", which reaches 1
  when the list cannot hold every relevant item but starts with as many as it can;
- nDCG@k: DCG = sum over the first k ranks of grade / log2(rank + 1) (linear gains, the convention of
  scikit-learn's ``ndcg_score``), divided by the DCG of the ideal ordering of all judged items;
- reciprocal rank: 1 / rank of the first relevant item (0 when none is retrieved);
- interpolated precision at recall levels 0.0, 0.1, ..., 1.0 (the TREC 11-point curve): at level r, the
  highest precision at any rank whose recall is >= r (0 when the list never reaches r);
- hit@k: 1 when the first k ranks hold a relevant item (grade >= 1), else 0; its mean over queries is
  the share of queries answered in the first k (k = :data:`HIT_K` = 3 in the summaries);
- hub share (over a suite's queries, not one query): the image found most often among the queries'
  first k results (the "hub", Radovanovic et al. 2010: an image close to everything in the embedding
  space), and the share of queries whose first k hold it. 1/queries at best, 1.0 when one image is in
  every query's first k.

Tests check these against scikit-learn (``ndcg_score``, ``average_precision_score``) and hand values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

RECALL_LEVELS = tuple(round(0.1 * i, 1) for i in range(11))
HIT_K = 3  # the cut-off of hit@k and of the hub share (the open-vocabulary issue's "top 3")


def _relevant(judgments: Mapping[str, float]) -> set[str]:
    return {i for i, g in judgments.items() if g > 0}


def precision_at_k(ranked: Sequence[str], judgments: Mapping[str, float], k: int) -> float:
    """Share of the first ``k`` ranks holding a relevant item (a shorter list counts its gaps as misses)."""
    if k <= 0:
        raise ValueError(f"k must be >= 1, got {k}")
    relevant = _relevant(judgments)
    return sum(1 for i in ranked[:k] if i in relevant) / k


def recall_at_k(ranked: Sequence[str], judgments: Mapping[str, float], k: int) -> float:
    """Share of all relevant items found in the first ``k`` ranks (0 when nothing is relevant)."""
    if k <= 0:
        raise ValueError(f"k must be >= 1, got {k}")
    relevant = _relevant(judgments)
    if not relevant:
        return 0.0
    return sum(1 for i in ranked[:k] if i in relevant) / len(relevant)


def average_precision(ranked: Sequence[str], judgments: Mapping[str, float], depth: int | None = None) -> float:
    """Non-interpolated average precision of ``ranked`` (cut at ``depth`` when given; see the module doc)."""
    relevant = _relevant(judgments)
    if not relevant:
        return 0.0
    ranked = list(ranked[:depth] if depth else ranked)
    found, total = 0, 0.0
    for rank, image_id in enumerate(ranked, start=1):
        if image_id in relevant:
            found += 1
            total += found / rank
    return total / min(len(relevant), depth or len(relevant))


def dcg(gains: Iterable[float]) -> float:
    """Discounted cumulative gain of gains in rank order: sum of gain / log2(rank + 1)."""
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))


def ndcg_at_k(ranked: Sequence[str], judgments: Mapping[str, float], k: int) -> float:
    """nDCG@k with graded relevance (linear gains), ideal = the best ordering of every judged item."""
    if k <= 0:
        raise ValueError(f"k must be >= 1, got {k}")
    ideal = dcg(sorted((g for g in judgments.values() if g > 0), reverse=True)[:k])
    if ideal <= 0:
        return 0.0
    return dcg(max(judgments.get(i, 0.0), 0.0) for i in ranked[:k]) / ideal


def reciprocal_rank(ranked: Sequence[str], judgments: Mapping[str, float]) -> float:
    """1 / rank of the first relevant item, 0 when the list holds none."""
    relevant = _relevant(judgments)
    return next((1.0 / rank for rank, i in enumerate(ranked, start=1) if i in relevant), 0.0)


def hit_at_k(ranked: Sequence[str], judgments: Mapping[str, float], k: int) -> float:
    """1.0 when the first ``k`` ranks hold a relevant item (grade > 0), else 0.0."""
    if k <= 0:
        raise ValueError(f"k must be >= 1, got {k}")
    relevant = _relevant(judgments)
    return 1.0 if any(i in relevant for i in ranked[:k]) else 0.0


def hub_share(rankings: Sequence[Sequence[str]], k: int = HIT_K) -> tuple[str, float]:
    """The image in the most queries' first ``k`` results of ``rankings`` (one ranked list per query), and
    the share of queries whose first ``k`` hold it. Ties go to the smallest image id; ("", 0.0) when no list
    holds anything.

    Raises:
        ValueError: no rankings, or ``k`` < 1.
    """
    if k <= 0:
        raise ValueError(f"k must be >= 1, got {k}")
    if not rankings:
        raise ValueError("no rankings to count hubs in")
    counts: dict[str, int] = {}
    for ranked in rankings:
        for image_id in set(ranked[:k]):
            counts[image_id] = counts.get(image_id, 0) + 1
    if not counts:
        return "", 0.0
    hub = min(counts, key=lambda i: (-counts[i], i))
    return hub, counts[hub] / len(rankings)


def interpolated_precision(
    ranked: Sequence[str], judgments: Mapping[str, float], levels: Sequence[float] = RECALL_LEVELS
) -> list[float]:
    """Interpolated precision at each recall level (the 11-point precision-recall curve of one query)."""
    relevant = _relevant(judgments)
    if not relevant:
        return [0.0 for _ in levels]
    points, found = [], 0
    for rank, image_id in enumerate(ranked, start=1):
        if image_id in relevant:
            found += 1
            points.append((found / len(relevant), found / rank))
    return [max((p for r, p in points if r >= level - 1e-9), default=0.0) for level in levels]


@dataclass(frozen=True)
class QueryMetrics:
    """Every metric of one query at cut-off ``k`` (AP over the whole returned list)."""

    precision: float
    recall: float
    ap: float
    ndcg: float
    rr: float
    pr_curve: tuple[float, ...]
    recall_at_1: float = 0.0  # the share of relevant items found first: 1 or 0 for a single-answer query
    hit: float = 0.0  # hit@HIT_K: 1 when a relevant item is among the first HIT_K

    @classmethod
    def of(
        cls, ranked: Sequence[str], judgments: Mapping[str, float], k: int, depth: int | None = None
    ) -> QueryMetrics:
        return cls(
            precision_at_k(ranked, judgments, k),
            recall_at_k(ranked, judgments, k),
            average_precision(ranked, judgments, depth),
            ndcg_at_k(ranked, judgments, k),
            reciprocal_rank(ranked, judgments),
            tuple(interpolated_precision(ranked, judgments)),
            recall_at_k(ranked, judgments, 1),
            hit_at_k(ranked, judgments, HIT_K),
        )


def summarise(per_query: Sequence[QueryMetrics], k: int) -> dict[str, float | list[float] | int]:
    """Means over queries: ``precision@k``, ``recall@k``, ``recall@1``, ``mAP``, ``nDCG@k``, ``MRR``, ``hit@3``
    (:data:`HIT_K`), the mean 11-point curve (``pr_curve``, one precision per level of :data:`RECALL_LEVELS`)
    and ``queries``."""
    if not per_query:
        raise ValueError("no queries to summarise")
    mean = lambda values: float(np.mean(list(values)))  # noqa: E731
    return {
        f"precision@{k}": mean(q.precision for q in per_query),
        f"recall@{k}": mean(q.recall for q in per_query),
        "recall@1": mean(q.recall_at_1 for q in per_query),
        "mAP": mean(q.ap for q in per_query),
        f"nDCG@{k}": mean(q.ndcg for q in per_query),
        "MRR": mean(q.rr for q in per_query),
        f"hit@{HIT_K}": mean(q.hit for q in per_query),
        "pr_curve": [float(v) for v in np.mean([q.pr_curve for q in per_query], axis=0)],
        "queries": len(per_query),
    }
