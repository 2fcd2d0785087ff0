"""The factor registry (services/ranking/factor_registry.py): every factor with its signal, fields and
scorer; which factors a ranker and a query's signals make worth computing; and how :func:`score_candidates`
fills them in: vector factors through ``MilvusStore.similarities`` (only for candidates no route scored),
the per-candidate factors from the stored fields the routes read, BM25 over the whole list."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from visearch.services.ranking.factor_registry import REGISTRY, ScoringContext, route_fields, score_candidates, weighed
from visearch.services.ranking.query import Candidate, Query
from visearch.services.ranking.ranker import BUILTIN_PROFILES, FACTORS, Ranker
from visearch.shared.store import StoredHit

TENANT = "default"
DAY_MS = 86_400_000
NOW_MS = 1_700_000_000_000


def profile(name: str) -> Ranker:
    return Ranker(name, BUILTIN_PROFILES[name])


def names(factors) -> list[str]:
    return [f.name for f in factors]


# --- the registry ---------------------------------------------------------------------------------------------


def test_the_registry_lists_the_rankers_factors_in_order():
    assert tuple(REGISTRY) == FACTORS
    assert all(name == factor.name for name, factor in REGISTRY.items())


def test_each_factor_has_one_kind_of_scorer_or_comes_from_elsewhere():
    for factor in REGISTRY.values():
        kinds = [factor.space is not None, factor.scorer is not None, factor.batch_scorer is not None]
        assert sum(kinds) <= 1, factor.name
    assert {n for n, f in REGISTRY.items() if f.space} == {"visual", "text", "colour"}
    assert {n for n, f in REGISTRY.items() if not (f.space or f.scorer or f.batch_scorer)} == {"region", "exact"}


ALL_SIGNALS = {"visual", "joint", "colour", "text", "tags", "taxonomy", "phash", "main_visual"}


@pytest.mark.parametrize(
    ("profile_name", "signals", "expected"),
    [
        ("blended", {"visual"}, ["visual", "region", "in_stock"]),  # freshness weighs 0 in blended
        (
            "blended",
            ALL_SIGNALS,
            ["visual", "region", "text", "bm25", "tags", "taxonomy", "colour", "in_stock", "phash"],
        ),
        ("blended", {"joint", "text", "tags"}, ["text", "bm25", "tags", "in_stock"]),  # a text query
        ("blended", set(), ["in_stock"]),
        ("visual_only", {"visual"}, ["visual"]),
        ("visual_only", {"joint", "text", "tags"}, ["text"]),
        ("visual_only", ALL_SIGNALS, ["visual", "text"]),
        ("colour", {"colour"}, ["colour", "in_stock"]),
        ("colour", {"visual"}, ["in_stock"]),
    ],
)
def test_weighed_needs_a_weight_and_the_querys_signal(profile_name, signals, expected):
    assert names(weighed(profile(profile_name), signals)) == expected


def test_weighed_counts_negative_weights_and_skips_zero_ones():
    ranker = Ranker("odd", {"visual": -0.5, "tags": 0.0, "freshness": 0.1})
    assert names(weighed(ranker, ALL_SIGNALS)) == ["visual", "freshness"]


@pytest.mark.parametrize(
    ("ranker", "signals", "expected"),
    [
        (profile("blended"), {"visual"}, ("image_id", "in_stock")),
        (profile("blended"), ALL_SIGNALS, ("image_id", "tags", "attributes", "taxonomy", "in_stock", "phash")),
        (profile("blended"), {"visual", "phash"}, ("image_id", "in_stock", "phash")),
        (profile("visual_only"), ALL_SIGNALS, ("image_id",)),
        (profile("colour"), {"colour"}, ("image_id", "in_stock")),
        (Ranker("fresh", {"freshness": 1.0, "tags": 1.0}), {"tags"}, ("image_id", "tags", "attributes", "updated_ms")),
        (Ranker("fresh", {"freshness": 1.0, "tags": 1.0}), set(), ("image_id", "updated_ms")),  # no tags to compare
    ],
)
def test_route_fields_are_the_image_id_and_the_weighed_factors_fields(ranker, signals, expected):
    assert route_fields(ranker, signals) == expected


# --- score_candidates -------------------------------------------------------------------------------------------


class SimilarityStore:
    """similarities() from fixed per-space values; records each call (space, tenant, ids, vectors)."""

    def __init__(self, values: dict[str, dict[str, float]]) -> None:
        self.values = values
        self.calls: list[tuple] = []

    def similarities(self, space, tenant, image_ids, vectors):
        ids = list(image_ids)
        self.calls.append((space, tenant, ids, [np.asarray(v) for v in vectors]))
        return {i: self.values[space][i] for i in ids if i in self.values.get(space, {})}


class ScoreIndex:
    def __init__(self, ids: list[str], scores: list[float]) -> None:
        self.ids, self.scores_ = ids, np.asarray(scores, dtype=np.float32)
        self.calls: list[tuple] = []

    def scores(self, tenant, text):
        self.calls.append((tenant, text))
        return self.ids, self.scores_


def candidate(image_id: str, factors: dict | None = None, **fields) -> Candidate:
    return Candidate(StoredHit(image_id, 0.0, {"image_id": image_id, **fields}), dict(factors or {}))


VISUAL = np.array([1.0, 0.0], dtype=np.float32)
MAIN = np.array([0.0, 1.0], dtype=np.float32)
JOINT = np.array([0.6, 0.8], dtype=np.float32)
COLOUR = np.array([0.0, 0.0, 1.0], dtype=np.float32)


def context(store, index=None, now_ms: int = NOW_MS, half_life: float = 30.0) -> ScoringContext:
    return ScoringContext(store, index or ScoreIndex([], []), TENANT, half_life, now_ms)


def test_vector_factors_come_from_one_similarity_search_per_space_for_the_candidates_lacking_them():
    store = SimilarityStore(
        {"image": {"b": 0.7, "c": 0.2}, "joint": {"a": 0.4, "b": 0.5, "c": 0.6}, "colour": {"a": 0.9, "b": 0.8}}
    )  # c has no colour descriptor
    candidates = {
        "a": candidate("a", {"visual": 0.95, "region": 0.5}),
        "b": candidate("b", {"region": 0.3}),
        "c": candidate("c"),
    }
    query = Query("image_id", visual=VISUAL, joint=JOINT, colour=COLOUR, main_visual=MAIN)
    score_candidates(
        candidates, query, Ranker("v", {"visual": 1.0, "text": 1.0, "colour": 1.0, "region": 1.0}), context(store)
    )
    assert [(space, tenant, ids) for space, tenant, ids, _ in store.calls] == [
        ("image", TENANT, ["b", "c"]),
        ("joint", TENANT, ["a", "b", "c"]),
        ("colour", TENANT, ["a", "b", "c"]),
    ]
    image_vectors = store.calls[0][3]
    assert len(image_vectors) == 2  # the whole image and the main photo: the better cosine counts
    np.testing.assert_array_equal(image_vectors[0], VISUAL)
    np.testing.assert_array_equal(image_vectors[1], MAIN)
    np.testing.assert_array_equal(store.calls[1][3][0], JOINT)
    assert len(store.calls[1][3]) == 1 and len(store.calls[2][3]) == 1
    assert candidates["a"].factors == {
        "visual": 0.95,
        "region": 0.5,
        "text": 0.4,
        "colour": 0.9,
    }  # the route's value stays
    assert candidates["b"].factors == {"visual": 0.7, "region": 0.3, "text": 0.5, "colour": 0.8}
    assert candidates["c"].factors == {"visual": 0.2, "text": 0.6}  # no region (routes only), no colour vector


def test_vectors_read_with_the_hits_give_their_factors_without_a_search():
    """A route that read the hits' joint and colour vectors (unified store layout): those factors are the best
    dot product with the query's vectors, computed here; an image without a colour (None) gets no colour
    factor and is not searched for one; only a candidate without the vectors (another route's) is searched."""
    store = SimilarityStore({"joint": {"c": 0.3}, "colour": {"c": 0.1}})
    candidates = {
        "a": candidate(
            "a", {"visual": 0.9}, joint_vector=np.array([1.0, 0.0]), colour_vector=np.array([0.0, 0.6, 0.8])
        ),
        "b": candidate("b", {"visual": 0.8}, joint_vector=np.array([0.0, 1.0]), colour_vector=None),
        "c": candidate("c", {"visual": 0.7}),
    }
    query = Query("image", visual=VISUAL, joint=JOINT, colour=COLOUR)
    score_candidates(candidates, query, Ranker("v", {"visual": 1.0, "text": 1.0, "colour": 1.0}), context(store))
    assert [(space, ids) for space, _, ids, _ in store.calls] == [("joint", ["c"]), ("colour", ["c"])]
    assert candidates["a"].factors == pytest.approx({"visual": 0.9, "text": 0.6, "colour": 0.8})
    assert candidates["b"].factors == pytest.approx({"visual": 0.8, "text": 0.8})
    assert candidates["b"].absent == {"colour"}
    assert candidates["c"].factors == pytest.approx({"visual": 0.7, "text": 0.3, "colour": 0.1})


def test_without_a_main_photo_the_visual_factor_uses_the_query_vector_alone():
    store = SimilarityStore({"image": {"a": 0.5}})
    score_candidates({"a": candidate("a")}, Query("image", visual=VISUAL), profile("visual_only"), context(store))
    ((space, _, ids, vectors),) = store.calls
    assert (space, ids, len(vectors)) == ("image", ["a"], 1)


def test_no_similarity_search_when_every_candidate_has_the_factor():
    store = SimilarityStore({})
    candidates = {"a": candidate("a", {"visual": 0.5}), "b": candidate("b", {"visual": 0.4})}
    score_candidates(
        candidates, Query("image", visual=VISUAL, main_visual=MAIN), profile("visual_only"), context(store)
    )
    assert store.calls == []
    score_candidates({}, Query("image", visual=VISUAL), profile("visual_only"), context(store))
    assert store.calls == []


def test_the_per_candidate_factors_read_the_stored_fields():
    ranker = Ranker("all", {"tags": 1.0, "taxonomy": 1.0, "phash": 1.0, "in_stock": 1.0, "freshness": 1.0})
    query = Query(
        "image",
        visual=VISUAL,
        tags={"red": 1.0, "dress": 1.0},
        taxonomy="clothing > dress > maxi",
        phash=0xFFFF_0000_FFFF_0000,
    )
    candidates = {
        "a": candidate(
            "a",
            tags="Red;shoe",
            attributes=json.dumps([["concept", "dress", 0.5], ["quality", "dress", 1.0]]),
            taxonomy="clothing > dress",
            phash=0xFFFF_0000_FFFF_0000,
            in_stock=True,
            updated_ms=NOW_MS - 30 * DAY_MS,
        ),
        "b": candidate(
            "b", tags="", attributes="[]", taxonomy="", phash=0xFFFF_0000_FFFF_00FF, in_stock=False, updated_ms=NOW_MS
        ),
        "c": candidate("c"),  # nothing stored
    }
    store = SimilarityStore({})
    score_candidates(candidates, query, ranker, context(store))
    assert store.calls == []  # no vector factor weighed
    a, b, c = (candidates[i].factors for i in "abc")
    assert a == pytest.approx({"tags": 0.75, "taxonomy": 2 / 3, "phash": 1.0, "in_stock": 1.0, "freshness": 0.5})
    assert b == pytest.approx({"tags": 0.0, "taxonomy": 0.0, "phash": 0.75, "in_stock": 0.0, "freshness": 1.0})
    assert c["tags"] == 0.0 and c["taxonomy"] == 0.0 and c["phash"] == 0.0 and c["in_stock"] == 0.0
    assert c["freshness"] == pytest.approx(math.exp(-math.log(2) * NOW_MS / DAY_MS / 30))


def test_freshness_uses_the_half_life_and_the_clock_when_no_time_is_given():
    store = SimilarityStore({})
    ranker = Ranker("fresh", {"freshness": 1.0})
    candidates = {"a": candidate("a", updated_ms=NOW_MS - 10 * DAY_MS)}
    score_candidates(candidates, Query("image"), ranker, context(store, half_life=10.0))
    assert candidates["a"].factors["freshness"] == pytest.approx(0.5)
    recent = {"a": candidate("a", updated_ms=int(time.time() * 1000))}
    score_candidates(recent, Query("image"), ranker, context(store, now_ms=0))  # now_ms 0: the current time
    assert recent["a"].factors["freshness"] == pytest.approx(1.0, abs=1e-3)


def test_bm25_is_divided_by_the_best_candidates_score():
    index = ScoreIndex(["x", "b", "a", "y"], [9.0, 4.0, 2.0, 1.0])  # x and y are not candidates
    candidates = {i: candidate(i) for i in ("a", "b", "c")}
    score_candidates(
        candidates, Query("text", text="red shoe"), Ranker("bm25", {"bm25": 1.0}), context(SimilarityStore({}), index)
    )
    assert index.calls == [(TENANT, "red shoe")]
    assert {i: c.factors for i, c in candidates.items()} == {"a": {"bm25": 0.5}, "b": {"bm25": 1.0}, "c": {"bm25": 0.0}}


def test_bm25_without_any_match_is_zero():
    candidates = {i: candidate(i) for i in ("a", "b")}
    score_candidates(
        candidates,
        Query("text", text="red"),
        Ranker("bm25", {"bm25": 1.0}),
        context(SimilarityStore({}), ScoreIndex(["z"], [3.0])),
    )
    assert {i: c.factors for i, c in candidates.items()} == {"a": {"bm25": 0.0}, "b": {"bm25": 0.0}}


def test_factors_not_weighed_or_without_the_querys_signal_are_not_set():
    store, index = SimilarityStore({"image": {"a": 0.5}, "joint": {"a": 0.5}}), ScoreIndex(["a"], [1.0])
    # visual_only: tags, taxonomy, phash, bm25 and in_stock are not weighed, whatever the query holds.
    rich = Query("image_id", visual=VISUAL, text="red", tags={"red": 1.0}, taxonomy="a > b", phash=5)
    candidates = {"a": candidate("a", tags="red", taxonomy="a > b", phash=5, in_stock=True)}
    score_candidates(candidates, rich, profile("visual_only"), context(store, index))
    assert candidates["a"].factors == {"visual": 0.5}
    assert [c[0] for c in store.calls] == ["image"] and index.calls == []
    # blended over a query with the visual signal alone: no text, bm25, tags, taxonomy, colour or phash.
    store.calls.clear()
    candidates = {"a": candidate("a", in_stock=True)}
    score_candidates(candidates, Query("image", visual=VISUAL), profile("blended"), context(store, index))
    assert candidates["a"].factors == {"visual": 0.5, "in_stock": 1.0}
    assert [c[0] for c in store.calls] == ["image"] and index.calls == []


# --- threshold pruning ------------------------------------------------------------------------------------------


def test_score_candidates_returns_the_candidates():
    candidates = {"a": candidate("a", {"visual": 0.5})}
    assert (
        score_candidates(
            candidates, Query("image", visual=VISUAL), profile("visual_only"), context(SimilarityStore({}))
        )
        is candidates
    )
    empty: dict[str, Candidate] = {}
    assert (
        score_candidates(empty, Query("image", visual=VISUAL), profile("visual_only"), context(SimilarityStore({})))
        == {}
    )


def test_candidates_that_cannot_reach_the_page_get_no_similarity_search():
    ranker = Ranker("p", {"visual": 1.0, "in_stock": 0.5})
    store = SimilarityStore({"image": {"c": 0.45, "d": 0.4}})

    def fresh():
        return {
            "a": candidate("a", {"visual": 0.9}, in_stock=True),
            "b": candidate("b", {"visual": 0.8}, in_stock=True),
            "c": candidate("c", in_stock=False),
            "d": candidate("d", in_stock=True),
        }

    # The routes' lowest visual score bounds the rest at 0.5: c (<= 0.5) and d (<= 1.0) cannot pass b (1.3).
    kept = score_candidates(
        fresh(), Query("image", visual=VISUAL), ranker, context(store), keep=2, ceilings={"visual": 0.5}
    )
    assert set(kept) == {"a", "b"} and store.calls == []
    # Without a ceiling d might reach 1.5: it is scored; c (at most 1.0) is not.
    kept = score_candidates(fresh(), Query("image", visual=VISUAL), ranker, context(store), keep=2)
    assert set(kept) == {"a", "b", "d"}
    assert [(space, ids) for space, _, ids, _ in store.calls] == [("image", ["d"])]
    assert kept["d"].factors == {"visual": 0.4, "in_stock": 1.0}


def test_no_pruning_without_keep_for_rrf_or_when_the_page_holds_every_candidate():
    query = Query("image", visual=VISUAL)
    values = {"c": 0.1, "d": 0.2}

    def fresh():
        return {
            "a": candidate("a", {"visual": 0.9}),
            "b": candidate("b", {"visual": 0.8}),
            "c": candidate("c"),
            "d": candidate("d"),
        }

    for ranker, keep in (
        (Ranker("b", {"visual": 1.0}), None),
        (Ranker("r", {"visual": 1.0}, fusion="rrf"), 1),
        (Ranker("b", {"visual": 1.0}), 4),
        (Ranker("b", {"visual": 1.0}), 10),
    ):
        store = SimilarityStore({"image": values})
        kept = score_candidates(fresh(), query, ranker, context(store), keep=keep, ceilings={"visual": 0.3})
        assert set(kept) == {"a", "b", "c", "d"}, (ranker.fusion, keep)
        assert store.calls[0][2] == ["c", "d"]


@pytest.mark.parametrize("seed", range(12))
def test_pruning_keeps_the_page_exactly(seed):
    """Random candidate lists: the pruned scoring ranks the first ``keep`` hits as scoring all of them does,
    when the ceilings hold (no unfound candidate beats a route's lowest score)."""
    rng = np.random.default_rng(seed)
    n, keep = int(rng.integers(5, 40)), int(rng.integers(1, 8))
    weights = {
        "visual": float(rng.choice([1.0, 0.5, -0.3])),
        "text": float(rng.choice([1.0, 0.2, -0.5, 0.0])),
        "colour": float(rng.choice([0.3, -0.2, 0.0])),
        "in_stock": 0.1,
        "tags": float(rng.uniform(0, 1)),
    }
    ranker = Ranker("random", weights)
    truth = {
        space: {f"i{k}": float(v) for k, v in enumerate(rng.uniform(lo, 1.0, n))}
        for space, lo in (("image", -0.2), ("joint", -0.5), ("colour", 0.0))
    }
    found_by_route = {f"i{k}" for k in range(n) if rng.random() < 0.4}
    ceilings = {"visual": max([truth["image"][i] for i in truth["image"] if i not in found_by_route], default=-1.0)}
    query = Query("image_id", visual=VISUAL, joint=JOINT, colour=COLOUR, tags={"red": 1.0})

    def fresh():
        return {
            f"i{k}": candidate(
                f"i{k}",
                {"visual": truth["image"][f"i{k}"]} if f"i{k}" in found_by_route else {},
                tags="red" if rng_tags[k] else "",
                in_stock=bool(rng_stock[k]),
            )
            for k in range(n)
        }

    rng_tags, rng_stock = rng.random(n) < 0.5, rng.random(n) < 0.5
    full = score_candidates(fresh(), query, ranker, context(SimilarityStore(truth)))
    pruned_store = SimilarityStore(truth)
    pruned = score_candidates(fresh(), query, ranker, context(pruned_store), keep=keep, ceilings=ceilings)
    expected = ranker.rank({i: c.factors for i, c in full.items()})[:keep]
    got = ranker.rank({i: c.factors for i, c in pruned.items()})[:keep]
    assert [(h.image_id, round(h.score, 9)) for h in got] == [(h.image_id, round(h.score, 9)) for h in expected]
    assert set(pruned) <= set(full)
    for space, _, ids, _ in pruned_store.calls:  # only the kept candidates are scored
        assert set(ids) <= set(pruned), space
