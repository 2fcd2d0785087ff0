"""Ranking metrics of `visearch eval` (hand-computed values, and scikit-learn as the reference), its
profiles and the hand-written suite data."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, ndcg_score

from visearch.offline.evaluation.metrics import (
    RECALL_LEVELS,
    QueryMetrics,
    average_precision,
    interpolated_precision,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    summarise,
)
from visearch.offline.evaluation.runner import profiles_for
from visearch.offline.evaluation.suites import TRANSFORMS, suite_data
from visearch.v1 import search_pb2

RANKED = ["a", "b", "c", "d", "e"]
BINARY = {"a": 1, "c": 1, "f": 1}  # f is relevant but never retrieved


def test_precision_and_recall_by_hand():
    assert precision_at_k(RANKED, BINARY, 3) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, BINARY, 3) == pytest.approx(2 / 3)
    assert precision_at_k(RANKED, BINARY, 1) == 1.0
    assert precision_at_k(RANKED, BINARY, 5) == pytest.approx(2 / 5)
    assert precision_at_k(["a"], BINARY, 4) == pytest.approx(1 / 4)  # a short list counts its gaps as misses
    assert recall_at_k(RANKED, {}, 3) == 0.0


def test_average_precision_by_hand():
    # relevant at ranks 1 and 3; f missing: (1/1 + 2/3) / 3
    assert average_precision(RANKED, BINARY) == pytest.approx(5 / 9)
    # cut at depth 2: only a found, divisor min(3 relevant, depth 2)
    assert average_precision(RANKED, BINARY, depth=2) == pytest.approx(0.5)
    assert average_precision(["x", "a"], {"a": 1}) == pytest.approx(0.5)
    assert average_precision(RANKED, {"z": 0}) == 0.0


def test_ndcg_by_hand_binary_and_graded():
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RANKED, BINARY, 3) == pytest.approx((1 + 1 / math.log2(4)) / ideal)  # 0.70392
    assert ndcg_at_k(RANKED, BINARY, 3) == pytest.approx(0.70392, abs=1e-5)
    graded = {"a": 2, "b": 0, "c": 1, "x": 2}  # x is the ideal list's second item, never retrieved
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(["b", "a", "c"], graded, 3) == pytest.approx(dcg / (2 + 2 / math.log2(3) + 1 / math.log2(4)))
    assert ndcg_at_k(["a", "x", "c"], graded, 3) == pytest.approx(1.0)
    assert ndcg_at_k(RANKED, {}, 3) == 0.0


def test_reciprocal_rank_and_interpolated_precision_by_hand():
    assert reciprocal_rank(["x", "y", "a"], BINARY) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x"], BINARY) == 0.0
    # points (recall 1/3, precision 1) and (2/3, 2/3); recall 1 is never reached
    curve = dict(zip(RECALL_LEVELS, interpolated_precision(RANKED, BINARY)))
    assert [curve[r] for r in (0.0, 0.3, 0.4, 0.6, 0.7, 1.0)] == pytest.approx([1, 1, 2 / 3, 2 / 3, 0, 0])


@pytest.mark.parametrize("seed", range(20))
def test_full_rankings_agree_with_scikit_learn(seed):
    """Over a full ranking of N items, nDCG@k equals sklearn's ndcg_score and AP its average_precision_score."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 40))
    grades = rng.integers(0, 4, size=n) * (rng.random(n) < 0.5)
    if not grades.any():
        grades[int(rng.integers(n))] = 1
    scores = rng.permutation(n).astype(float)  # distinct scores: no ties
    ids = [f"i{j}" for j in range(n)]
    ranked = [ids[j] for j in np.argsort(-scores)]
    judgments = {ids[j]: int(g) for j, g in enumerate(grades)}
    for k in (1, 3, 10, n):
        assert ndcg_at_k(ranked, judgments, k) == pytest.approx(ndcg_score(grades[None], scores[None], k=k))
    assert average_precision(ranked, judgments) == pytest.approx(average_precision_score(grades > 0, scores))


def test_summarise_means_and_curve():
    per_query = [QueryMetrics.of(RANKED, BINARY, 3), QueryMetrics.of(["x", "a"], {"a": 1}, 3)]
    s = summarise(per_query, 3)
    assert s["precision@3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert s["recall@3"] == pytest.approx((2 / 3 + 1) / 2)
    assert s["mAP"] == pytest.approx((5 / 9 + 0.5) / 2)
    assert s["MRR"] == pytest.approx(0.75)
    assert s["queries"] == 2 and len(s["pr_curve"]) == 11
    with pytest.raises(ValueError):
        summarise([], 3)
    with pytest.raises(ValueError):
        precision_at_k(RANKED, BINARY, 0)


def test_profiles_are_request_messages_with_one_override_per_ablation():
    profiles = {p.name: p for p in profiles_for(None, ["visual", "bm25", "phash"])}
    assert list(profiles) == [
        "visual_only",
        "blended",
        "blended_rrf",
        "blended-no-visual",
        "blended-no-bm25",
        "blended-no-phash",
    ]
    assert profiles["blended-no-bm25"].message() == search_pb2.RankingProfile(name="blended", weights={"bm25": 0.0})
    assert profiles["blended_rrf"].message().fusion == search_pb2.FUSION_RRF
    assert [p.name for p in profiles_for(["blended", "visual_only"], [])] == ["blended", "visual_only"]
    with pytest.raises(ValueError, match="unknown profiles"):
        profiles_for(["blended-no-colour"], ["visual"])


def _words(text: str) -> set[str]:
    stop = {"a", "an", "the", "of", "in", "on", "with", "and", "at", "to", "its", "his", "up", "for"}
    return set(re.findall(r"[a-z]+", text.lower())) - stop


def test_text_queries_are_not_copied_from_titles():
    """Each hand-written query shares at most half of its content words with any catalogue title."""
    from visearch.offline.datasets import photo_catalogue
    from visearch.offline.evaluation.suites import distractor_images

    titles = {i.image_id: i.title for i in [*photo_catalogue(), *distractor_images()]}
    queries = suite_data()["text2image"]
    assert len(queries) >= 2 * 19
    for q in queries:
        assert all(g in (1, 2) for g in q["relevant"].values()) and 2 in q["relevant"].values(), q
        for title in titles.values():
            shared = _words(q["query"]) & _words(title)
            assert len(shared) <= len(_words(q["query"])) / 2, (q["query"], title, shared)


def test_every_object_box_lies_inside_its_photo():
    from PIL import Image

    from visearch.offline.datasets import photo_catalogue

    photos = {p.image_id: p for p in photo_catalogue()}
    for image_id, (x1, y1, x2, y2) in suite_data()["objects"].items():
        if image_id in photos:
            width, height = Image.open(photos[image_id].uri).size
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, image_id
    assert {"crop_object", "text_banner", "combined"} <= set(TRANSFORMS)
