"""The unified store layout on a real Milvus Lite: one row per image with three vectors and a BM25 field.

Keyword search runs in Milvus (no index in the ranking process): a new or changed title is found by the
next query; filters and tenants apply; an attribute update writes one row per image (plus its regions);
images without a colour descriptor have none. And the layout choice: auto picks unified on an empty
database, keeps a per_space catalogue that has not been migrated, and knows which servers have it.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.test_store_filter import make_rows, unit
from visearch.shared.config import StoreSettings
from visearch.shared.errors import ConfigError
from visearch.shared.store import COLOUR_DIM, MilvusStore, RegionRow, SearchFilter, supports_unified

pytestmark = pytest.mark.milvus_lite


@pytest.fixture
def store(tmp_path):
    s = MilvusStore(StoreSettings(uri=str(tmp_path / "u.db")))
    try:
        yield s
    finally:
        s.close()


def _titled(store: MilvusStore, titles: dict[str, str], tenant: str = "A", seed: int = 0):
    rows = make_rows(tenant, len(titles), seed=seed)
    for row, (image_id, title) in zip(rows, titles.items()):
        row.image_id, row.title = image_id, title
    store.upsert(rows)
    return rows


def test_auto_picks_the_unified_layout_on_an_empty_database(store):
    assert store.layout == "unified" and store.full_text
    assert set(store.collections.values()) == {"visearch_items", "visearch_region"}


def test_keyword_search_runs_in_milvus_and_sees_a_new_title_on_the_next_query(store):
    """No refresh interval: the row written just before is found; terms are stemmed ("running" finds "runs")."""
    _titled(store, {"a": "red running shoes", "b": "blue cotton shirt", "c": "the dogs are running in the park"})
    assert [h.image_id for h in store.bm25_search("A", "dog runs", 10)] == ["c", "a"]
    _titled(store, {"z": "zebra print scarf"}, seed=3)
    hits = store.bm25_search("A", "zebras", 10, vector_space="joint")
    assert [h.image_id for h in hits] == ["z"] and hits[0].score > 0
    assert hits[0].fields["vector"].shape == (384,) and hits[0].fields["vector"].dtype == np.float32
    assert store.bm25_search("A", "the of and", 10) == []  # stop words only: no query


def test_keyword_search_applies_filters_and_tenants(store):
    _titled(store, {"a": "red shoes", "b": "red bag", "c": "red hat"})
    _titled(store, {"a": "red shoes"}, tenant="B", seed=1)
    in_stock = {h.image_id for h in store.bm25_search("A", "red", 10, SearchFilter(in_stock=True))}
    assert in_stock == {"b", "c"}  # make_rows: every third row (img 0 -> "a") is out of stock
    assert all(h.fields["tenant"] == "A" for h in store.bm25_search("A", "red", 10))
    scores = store.bm25_scores("A", "red shoes", ["a", "b", "missing"])
    assert scores["a"] > scores["b"] > 0 and scores["missing"] == 0.0


def test_an_attribute_update_writes_one_row_per_image_and_reaches_keyword_search(store, monkeypatch):
    rows = _titled(store, {"a": "plain mug", "b": "plain plate"})
    rows[0].regions = [
        RegionRow(index=i, label="cup", score=0.9, box=(0, 0, 10, 10), vector=unit(np.random.default_rng(i), 1280))
        for i in range(2)
    ]
    store.upsert(rows[:1])
    written: list[tuple[str, int]] = []
    upsert = store._client.upsert
    monkeypatch.setattr(
        store._client,
        "upsert",
        lambda collection_name, data, **k: (
            written.append((collection_name, len(data))) or upsert(collection_name, data, **k)
        ),
    )
    assert store.update_attributes("A", "a", {"title": "enamel camping mug", "in_stock": False})
    assert sorted(written) == [("visearch_items", 1), ("visearch_region", 2)]
    assert [h.image_id for h in store.bm25_search("A", "camping", 5)] == ["a"]
    stored = store.get("A", "a", "image")
    assert stored["in_stock"] is False and np.allclose(stored["vector"], rows[0].image_vector, atol=1e-6)
    assert np.allclose(store.get("A", "a", "joint")["vector"], rows[0].joint_vector, atol=1e-6)


def test_images_without_a_colour_have_none(store):
    rows = make_rows("A", 4, seed=5)
    colour = np.abs(unit(np.random.default_rng(9), COLOUR_DIM))
    rows[1].colour_vector = colour
    store.upsert(rows)
    assert store.count("colour") == 1 and store.count("image") == 4
    assert [h.image_id for h in store.search("colour", colour, tenant="A", top_k=10)] == ["img-1"]
    assert store.get("A", "img-0", "colour") is None and store.vectors("colour", "A", ["img-0", "img-1"]).keys() == {
        "img-1"
    }
    assert store.update_attributes("A", "img-0", {"price": 1.0}) and store.get("A", "img-0", "colour") is None


def test_auto_keeps_a_per_space_catalogue_until_it_is_migrated(tmp_path):
    settings = StoreSettings(uri=str(tmp_path / "old.db"))
    old = MilvusStore(settings.model_copy(update={"layout": "per_space"}))
    old.upsert(make_rows("A", 2, seed=1))
    old.close()
    again = MilvusStore(settings)
    try:
        assert again.layout == "per_space" and not again.full_text and again.count("image") == 2
        with pytest.raises(ConfigError, match="per_space"):
            again.bm25_search("A", "item", 5)
    finally:
        again.close()


@pytest.mark.parametrize(
    ("version", "unified"),
    [
        ("milvus_lite-3.2.2", True),
        ("milvus_lite-2.4.10", False),
        ("v2.3.5", False),
        ("v2.5.4", True),
        ("2.6.0", True),
        ("v3.0.0-beta", True),
        ("unknown", False),
    ],
)
def test_which_servers_have_the_unified_layout(version, unified):
    assert supports_unified(version) is unified


def test_a_server_without_bm25_gets_the_per_space_layout_or_a_clear_error(tmp_path, monkeypatch):
    """A Milvus 2.3 server (its version as Milvus reports it): auto falls back to per_space; asking for the
    unified layout is a configuration error naming the versions that have it."""
    from pymilvus import MilvusClient

    monkeypatch.setattr(MilvusClient, "get_server_version", lambda self, **k: "v2.3.5")
    fallback = MilvusStore(StoreSettings(uri=str(tmp_path / "s.db")))
    try:
        assert fallback.layout == "per_space"
    finally:
        fallback.close()
    with pytest.raises(ConfigError, match=r"Milvus >= 2.5"):
        MilvusStore(StoreSettings(uri=str(tmp_path / "s.db"), layout="unified"))


def test_a_search_reads_the_rows_other_vectors_with_its_hits(store):
    """One search gives each hit's joint and colour vectors too (no second read per factor); an image without a
    colour gives None. Per_space rows hold one vector: nothing else can come with a hit."""
    rows = make_rows("A", 3, seed=4)
    rows[0].colour_vector = np.abs(unit(np.random.default_rng(2), COLOUR_DIM))
    store.upsert(rows)
    assert store.row_spaces("image") == ("image", "joint", "colour") and store.row_spaces("region") == ()
    hits = {
        h.image_id: h.fields
        for h in store.search(
            "image",
            rows[0].image_vector,
            tenant="A",
            top_k=3,
            output_fields=["image_id"],
            vector_spaces=["joint", "colour"],
        )
    }
    np.testing.assert_allclose(hits["img-0"]["joint_vector"], rows[0].joint_vector, atol=1e-6)
    np.testing.assert_allclose(hits["img-0"]["colour_vector"], rows[0].colour_vector, atol=1e-6)
    assert hits["img-1"]["colour_vector"] is None and "has_colour" not in hits["img-1"]


def test_per_space_rows_hold_one_vector(tmp_path):
    per_space = MilvusStore(StoreSettings(uri=str(tmp_path / "p.db"), layout="per_space"))
    try:
        assert per_space.row_spaces("image") == ()
    finally:
        per_space.close()


def test_several_global_routes_are_one_union_search_with_exact_factors(store, monkeypatch):
    """A text query's joint and image-space routes on Milvus Lite: one call (hybrid search) whose candidates are
    the images the separate searches find, each with both routes' cosines computed from its vectors (the
    separate searches give each factor only for the images its own route found); filters apply; a factor's
    ceiling is its route's k-th best value."""
    from concurrent.futures import ThreadPoolExecutor

    from visearch.services.ranking import routes as routes_module
    from visearch.services.ranking.routes import JointRoute, VisualRoute, gather

    rows = make_rows("A", 40, seed=7)
    store.upsert(rows)
    rng = np.random.default_rng(9)
    routes = [JointRoute(unit(rng, 384)), VisualRoute(unit(rng, 1280))]
    flt = SearchFilter(in_stock=True)
    calls: list[str] = []
    union, search_many = store.search_union, store.search_many
    monkeypatch.setattr(store, "search_union", lambda *a, **k: calls.append("union") or union(*a, **k))
    monkeypatch.setattr(store, "search_many", lambda *a, **k: calls.append("search") or search_many(*a, **k))
    with ThreadPoolExecutor(2) as pool:
        ceilings: dict[str, float] = {}
        together = gather(routes, store, "A", 5, flt, ("image_id", "in_stock"), pool, ceilings)
        assert calls == ["union"]
        monkeypatch.setattr(routes_module, "_one_union", lambda *a: False)
        apart = gather(routes, store, "A", 5, flt, ("image_id", "in_stock"), pool)
    assert calls == ["union", "search", "search"]
    assert set(together) == set(apart) and all(c.stored.fields["in_stock"] for c in together.values())
    for image_id, candidate in apart.items():
        assert set(together[image_id].factors) == {"text", "visual"}
        for factor, value in candidate.factors.items():
            assert together[image_id].factors[factor] == pytest.approx(value, abs=1e-5)
    for factor in ("text", "visual"):
        fifth = sorted((c.factors[factor] for c in apart.values() if factor in c.factors), reverse=True)[4]
        assert ceilings[factor] == pytest.approx(fifth, abs=1e-5)


def test_a_union_search_needs_the_unified_layout(tmp_path):
    per_space = MilvusStore(StoreSettings(uri=str(tmp_path / "p.db"), layout="per_space"))
    try:
        with pytest.raises(ConfigError, match="unified layout"):
            per_space.search_union([("image", np.ones(1280, np.float32), 5)], tenant="A")
    finally:
        per_space.close()
