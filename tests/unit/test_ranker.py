"""The blended ranker, ranking profiles, learned-ranker files and hot reload; the non-vector factors; BM25."""

from __future__ import annotations

import math
import time

import pytest

from visearch.services.ranking.factors import (
    freshness,
    hit_tags,
    phash_similarity,
    tag_overlap,
    taxonomy_agreement,
    text_tags,
)
from visearch.services.ranking.ranker import Ranker, RankerRegistry, read_ranker, write_ranker
from visearch.services.ranking.text_index import TextIndex
from visearch.shared.errors import InvalidEventError

CANDIDATES = {"a": {"visual": 0.9, "bm25": 0.0}, "b": {"visual": 0.6, "bm25": 1.0}, "c": {"visual": 0.7}}


def test_blend_is_weighted_sum_with_contributions():
    hits = Ranker("t", {"visual": 1.0, "bm25": 0.5}, bias=0.1).rank(CANDIDATES)
    assert [h.image_id for h in hits] == ["b", "a", "c"]  # 1.2, 1.0, 0.8
    assert hits[0].contributions == {"visual": 0.6, "bm25": 0.5}
    assert math.isclose(hits[0].score, 0.1 + 0.6 + 0.5)
    assert hits[2].contributions == {"visual": 0.7}  # a missing factor contributes nothing


def test_zero_weight_switches_a_factor_off():
    hits = Ranker("t", {"visual": 1.0, "bm25": 0.0}).rank(CANDIDATES)
    assert [h.image_id for h in hits] == ["a", "c", "b"]
    assert all("bm25" not in h.contributions for h in hits)


def test_rrf_uses_ranks_not_values():
    """RRF (Cormack et al. 2009): score = sum of w / (k + rank) over the factors a candidate has evidence
    for (value > 0); equal values share a rank."""
    hits = Ranker("t", {"visual": 1.0, "bm25": 1.0}, fusion="rrf", rrf_k=60).rank(CANDIDATES)
    scores = {h.image_id: h.score for h in hits}
    assert math.isclose(scores["a"], 1 / 61)  # visual rank 1; bm25 0.0 is no evidence
    assert math.isclose(scores["b"], 1 / 63 + 1 / 61)
    assert math.isclose(scores["c"], 1 / 62)  # no bm25 value: no bm25 contribution
    assert [h.image_id for h in hits] == ["b", "a", "c"]
    tied = Ranker("t", {"in_stock": 1.0}, fusion="rrf").rank(
        {"x": {"in_stock": 1.0}, "y": {"in_stock": 1.0}, "z": {"in_stock": 0.0}}
    )
    assert [h.score for h in tied] == [1 / 61, 1 / 61, 0.0]


def test_ties_break_by_image_id():
    hits = Ranker("t", {"visual": 1.0}).rank({"y": {"visual": 0.5}, "x": {"visual": 0.5}})
    assert [h.image_id for h in hits] == ["x", "y"]


@pytest.mark.parametrize(
    "kwargs", [{"weights": {"colour_of_sky": 1.0}}, {"fusion": "max"}, {"weights": {"visual": float("nan")}}]
)
def test_bad_profiles_are_invalid_argument(kwargs):
    with pytest.raises(InvalidEventError) as info:
        Ranker("t", **kwargs)
    assert info.value.reason == "bad_ranking_profile"


def test_registry_resolves_named_tenant_and_override():
    registry = RankerRegistry(profiles={"shop": {"visual": 2.0}}, tenant_profiles={"acme": "shop"})
    assert registry.resolve("other").name == "profile:blended"
    assert registry.resolve("acme").weights == {"visual": 2.0}
    assert registry.resolve("acme", name="visual_only").name == "profile:visual_only"
    over = registry.resolve("acme", weights={"bm25": 0.5}, fusion="rrf")
    assert over.weights == {"visual": 2.0, "bm25": 0.5} and over.fusion == "rrf" and over.name.endswith("+override")
    with pytest.raises(InvalidEventError):
        registry.resolve("acme", name="nope")
    with pytest.raises(ValueError):
        RankerRegistry(default_profile="nope")


def test_learned_ranker_versions_and_hot_reload(tmp_path):
    """write_ranker numbers versions; the registry serves the newest and picks a newer one up by itself;
    a broken newer file is skipped and the previous version keeps serving."""
    registry = RankerRegistry(learned_dir=tmp_path, reload_interval_s=0.1)
    assert registry.resolve("t").name == "profile:blended"
    first = write_ranker(tmp_path, Ranker("fit", {"visual": 1.0, "text": 0.3}, bias=-1.0), metrics={"ndcg@10": 0.8})
    assert first.name == "ranker-v1.json"
    time.sleep(0.15)
    assert registry.resolve("t").name == "learned:1"
    ranker, doc = read_ranker(first)
    assert ranker.weights == {"visual": 1.0, "text": 0.3} and ranker.bias == -1.0 and doc["metrics"]["ndcg@10"] == 0.8
    (tmp_path / "ranker-v2.json").write_text("{not json")
    time.sleep(0.15)
    assert registry.resolve("t").name == "learned:1"
    assert write_ranker(tmp_path, Ranker("fit", {"visual": 0.5})).name == "ranker-v3.json"
    time.sleep(0.15)
    assert registry.resolve("t").name == "learned:3"
    # A named profile still wins over the learned ranker (per-request rollback).
    assert registry.resolve("t", name="blended").name == "profile:blended"
    # Deleting the served version rolls back hot: the newest readable one left (v2 is broken: v1), then none.
    (tmp_path / "ranker-v3.json").unlink()
    time.sleep(0.15)
    assert registry.resolve("t").name == "learned:1"
    first.unlink()
    time.sleep(0.15)
    assert registry.resolve("t").name == "profile:blended" and registry.reload() == 0


def test_factor_functions():
    assert taxonomy_agreement("a > b > c", "a > b > d") == pytest.approx(2 / 3)
    assert taxonomy_agreement("a > b", "a > b") == 1.0 and taxonomy_agreement("", "a") == 0.0
    assert taxonomy_agreement("x > b", "a > b") == 0.0
    assert tag_overlap({"dog": 1.0, "red": 0.5}, {"dog": 0.8}) == pytest.approx(0.8 / 1.5)
    assert tag_overlap({}, {"dog": 1.0}) == 0.0
    now = 10 * 86_400_000
    assert freshness(now, now, 30) == 1.0 and freshness(now - 30 * 86_400_000, now, 30) == pytest.approx(0.5)
    assert phash_similarity(0b1111, 0b0111) == pytest.approx(31 / 32) and phash_similarity(0, 5) == 0.0
    assert phash_similarity(2**40 - 1, 1) == 0.0  # 39 bits apart: unrelated
    fields = {
        "tags": "Summer;dog",
        "attributes": '[["object", "dog", 0.4], ["colour", "red", 0.7], ["blur", "x", 1.0]]',
    }
    assert hit_tags(fields) == {"summer": 1.0, "dog": 1.0, "red": 0.7}
    assert text_tags("Red ankle boot") == {"red": 1.0, "ankle": 1.0, "boot": 1.0, "red ankle": 1.0, "ankle boot": 1.0}


def test_bm25_index_stems_drops_stop_words_and_refreshes():
    rows = {
        "t": [
            {"image_id": "1", "title": "Red running shoes"},
            {"image_id": "2", "title": "A blue dress"},
            {"image_id": "3", "title": "coffee", "ocr_text": "FRESH COFFEE"},
        ]
    }
    index = TextIndex(lambda tenant: rows.get(tenant, []), refresh_s=3600)
    assert [i for i, _ in index.search("t", "the shoe", 5)] == ["1"]
    assert index.search("t", "the of and", 5) == [] and index.search("t", "zebra", 5) == []
    assert index.search("nobody", "shoe", 5) == []
    ids, scores = index.scores("t", "coffee")
    assert ids == ["1", "2", "3"] and scores[2] > 0 and scores[0] == 0
    rows["t"].append({"image_id": "4", "title": "zebra print"})
    assert index.search("t", "zebra", 5) == []  # cached until refresh_s or invalidate
    index.invalidate("t")
    assert [i for i, _ in index.search("t", "zebra", 5)] == ["4"]
