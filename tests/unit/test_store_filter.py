"""Unit tests for visearch.shared.store: filter expressions (pure strings) and a real Milvus Lite round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from visearch.shared.config import StoreSettings
from visearch.shared.store import SPACES, IndexRow, MilvusStore, SearchFilter, primary_key

# ----------------------------------------------------------------------------------------- expressions


def test_primary_key_is_tenant_slash_image_id():
    """Primary keys are <tenant>/<image_id>."""
    assert primary_key("acme", "shoes/123") == "acme/shoes/123"


def test_empty_filter_is_tenant_only():
    """With no conditions the expression still restricts to the tenant."""
    assert SearchFilter().expression("acme") == 'tenant == "acme"'


def test_tenant_is_json_quoted():
    """A tenant containing a quote cannot break out of the string literal."""
    expr = SearchFilter().expression('a" or tenant != "b')
    assert expr == 'tenant == "a\\" or tenant != \\"b"'


def test_categories_and_brands_are_json_lists():
    """categories/brands become `in [...]` with JSON-quoted strings; quotes and backslashes are escaped."""
    f = SearchFilter(categories=["shoes", 'say "hi"'], brands=["a\\b"])
    expr = f.expression("t")
    assert expr == 'tenant == "t" and category in ["shoes", "say \\"hi\\""] and brand in ["a\\\\b"]'
    list_text = expr.split("category in ", 1)[1].split(" and brand in ")[0]
    assert json.loads(list_text) == ["shoes", 'say "hi"']


@pytest.mark.parametrize(("value", "text"), [(True, "in_stock == true"), (False, "in_stock == false")])
def test_in_stock_is_lowercase_boolean(value, text):
    """in_stock True/False render as lowercase true/false (False is a condition, not 'no filter')."""
    assert SearchFilter(in_stock=value).expression("t") == f'tenant == "t" and {text}'


def test_price_bounds():
    """price_min/price_max render as >= and <= floats; 0 is a real bound."""
    assert (
        SearchFilter(price_min=10, price_max=99.5).expression("t")
        == 'tenant == "t" and price >= 10.0 and price <= 99.5'
    )
    assert SearchFilter(price_min=0.0).expression("t") == 'tenant == "t" and price >= 0.0'
    assert SearchFilter(price_max=0).expression("t") == 'tenant == "t" and price <= 0.0'


def test_exclude_image_ids():
    """Excluded ids become `image_id not in [...]`."""
    expr = SearchFilter(exclude_image_ids=["a", 'b"c']).expression("t")
    assert expr == 'tenant == "t" and image_id not in ["a", "b\\"c"]'


def test_all_conditions_joined_with_and():
    """Every condition present, in a fixed order, joined by ' and '."""
    f = SearchFilter(categories=["c"], brands=["b"], in_stock=True, price_min=1, price_max=2, exclude_image_ids=["x"])
    assert f.expression("t") == (
        'tenant == "t" and category in ["c"] and brand in ["b"] and in_stock == true'
        ' and price >= 1.0 and price <= 2.0 and image_id not in ["x"]'
    )


def test_empty_lists_and_none_mean_no_condition():
    """Empty lists and None add nothing."""
    f = SearchFilter(categories=[], brands=[], in_stock=None, price_min=None, price_max=None, exclude_image_ids=[])
    assert f.expression("t") == 'tenant == "t"'


# -------------------------------------------------------------------------------------------- Milvus Lite


def unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    """A random float32 unit vector."""
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def make_rows(tenant: str, n: int, seed: int) -> list[IndexRow]:
    """n rows: categories alternate shoes/bags, price = 10*i, every third is out of stock."""
    rng = np.random.default_rng(seed)
    return [
        IndexRow(
            image_id=f"img-{i}",
            tenant=tenant,
            image_vector=unit(rng, SPACES["image"]),
            joint_vector=unit(rng, SPACES["joint"]),
            title=f"item {i}",
            category="shoes" if i % 2 == 0 else "bags",
            brand="acme",
            price=10.0 * i,
            in_stock=i % 3 != 0,
            uri=f"/x/{i}.jpg",
        )
        for i in range(n)
    ]


@pytest.fixture(params=["unified", "per_space"])
def store(tmp_path, request):
    """A Milvus Lite store in each layout (unified: Milvus >= 2.5's; per_space: Milvus 2.3's)."""
    s = MilvusStore(StoreSettings(uri=str(tmp_path / "t.db"), layout=request.param))
    try:
        yield s
    finally:
        s.close()


@pytest.mark.milvus_lite
def test_milvus_lite_round_trip(store):
    """Idempotent upsert, self-search, filters, pagination, get, delete and tenant isolation on a real Milvus Lite."""
    rows_a = make_rows("A", 12, seed=1)
    rows_b = make_rows("B", 4, seed=2)
    assert store.upsert(rows_a) == 12
    assert store.upsert(rows_b) == 4
    assert store.upsert([]) == 0

    # Idempotent upsert: same primary keys, same count.
    assert store.upsert(rows_a) == 12
    for space in ("image", "joint"):
        assert store.count(space) == 16
        assert store.count(space, tenant="A") == 12
        assert store.count(space, tenant="B") == 4
    # Rows without a colour descriptor or regions (classification/detection did not run) write none.
    assert store.count("colour") == store.count("region") == 0

    # A row finds itself first, with cosine ~1, in both spaces.
    row = rows_a[5]
    for space, vec in (("image", row.image_vector), ("joint", row.joint_vector)):
        hits = store.search(space, vec, tenant="A", top_k=3)
        assert hits[0].image_id == "img-5"
        assert hits[0].score == pytest.approx(1.0, abs=1e-3)
        assert hits[0].fields["category"] == "bags" and hits[0].fields["price"] == pytest.approx(50.0)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    # Filters.
    hits = store.search("image", row.image_vector, tenant="A", top_k=20, filter=SearchFilter(categories=["shoes"]))
    assert {h.image_id for h in hits} == {f"img-{i}" for i in range(0, 12, 2)}
    hits = store.search("image", row.image_vector, tenant="A", top_k=20, filter=SearchFilter(in_stock=False))
    assert {h.image_id for h in hits} == {"img-0", "img-3", "img-6", "img-9"}
    hits = store.search(
        "image", row.image_vector, tenant="A", top_k=20, filter=SearchFilter(price_min=20, price_max=40)
    )
    assert {h.image_id for h in hits} == {"img-2", "img-3", "img-4"}
    hits = store.search(
        "image", row.image_vector, tenant="A", top_k=20, filter=SearchFilter(exclude_image_ids=["img-5"])
    )
    assert "img-5" not in {h.image_id for h in hits} and len(hits) == 11

    # Offset pagination: page 2 continues page 1.
    full = [h.image_id for h in store.search("image", row.image_vector, tenant="A", top_k=6)]
    page2 = [h.image_id for h in store.search("image", row.image_vector, tenant="A", top_k=3, offset=3)]
    assert page2 == full[3:6]

    # Tenant isolation: B's rows are never returned for A, and A's own vector finds nothing of A in B.
    hits = store.search("image", rows_b[0].image_vector, tenant="A", top_k=20)
    assert all(h.fields["tenant"] == "A" for h in hits)
    hits = store.search("image", row.image_vector, tenant="B", top_k=20)
    assert len(hits) == 4 and all(h.fields["tenant"] == "B" for h in hits)

    # get.
    got = store.get("A", "img-5", "joint")
    assert got["image_id"] == "img-5" and got["title"] == "item 5"
    assert np.allclose(got["vector"], row.joint_vector, atol=1e-6)
    assert store.get("A", "missing") is None
    assert store.get("B", "img-7") is None  # exists in A only

    # delete removes both spaces, only for that tenant; unknown ids are ignored.
    store.delete("A", ["img-5", "never-indexed"])
    assert store.get("A", "img-5", "image") is None and store.get("A", "img-5", "joint") is None
    assert store.count("image", tenant="A") == 11 and store.count("joint", tenant="A") == 11
    assert store.count("image", tenant="B") == 4
    assert store.get("B", "img-0") is not None
    hits = store.search("image", row.image_vector, tenant="A", top_k=20)
    assert "img-5" not in {h.image_id for h in hits}


@pytest.mark.milvus_lite
def test_milvus_lite_reopen_keeps_rows(tmp_path):
    """Rows survive close() and reopening the same .db file (the existing collections are loaded, not recreated)."""
    settings = StoreSettings(uri=str(tmp_path / "t.db"))
    rows = make_rows("A", 3, seed=3)
    first = MilvusStore(settings)
    try:
        first.upsert(rows)
    finally:
        first.close()
    second = MilvusStore(settings)
    try:
        assert second.count("image") == 3 and second.count("joint") == 3
        assert second.search("image", rows[1].image_vector, tenant="A", top_k=1)[0].image_id == "img-1"
    finally:
        second.close()


@pytest.mark.milvus_lite
@pytest.mark.parametrize(("kind", "knob"), [("HNSW", {"ef": 256}), ("IVF_FLAT", {"nprobe": 32}), ("FLAT", None)])
def test_index_type_is_built_and_its_search_knob_sent(tmp_path, kind, knob):
    """The configured index type is what Milvus builds; searches send that index's recall knob (HNSW ef is
    raised to offset + top_k); a reopened collection keeps the index it was built with, whatever the
    settings now say."""
    store = MilvusStore(StoreSettings(uri=str(tmp_path / "t.db"), index_type=kind))
    try:
        assert (
            store._client.describe_index(store.collections["image"], store.vector_fields["image"])["index_type"] == kind
        )
        store.upsert(make_rows("A", 3, seed=5))
        assert (
            store.search("image", make_rows("A", 3, seed=5)[2].image_vector, tenant="A", top_k=1)[0].image_id == "img-2"
        )
        params = store.search_params("image", top_k=10, offset=5)
        assert params.get("params") == knob and params["offset"] == 5 and params["metric_type"] == "COSINE"
        if kind == "HNSW":
            assert store.search_params("image", top_k=200, offset=100)["params"] == {"ef": 300}
    finally:
        store.close()
    reopened = MilvusStore(StoreSettings(uri=str(tmp_path / "t.db"), index_type="AUTOINDEX"))
    try:
        assert reopened.search_params("image", top_k=10).get("params") == knob
    finally:
        reopened.close()


@pytest.mark.milvus_lite
@pytest.mark.parametrize("creator_finishes", [True, False])
def test_a_collection_seen_before_its_index_is_awaited_or_indexed(tmp_path, monkeypatch, creator_finishes):
    """A service starting beside the one that creates the collections can see a collection before its
    vector index (load_collection would fail with "index not found"): it waits for the creator's index,
    or builds the index itself when none comes, and then serves searches."""
    import threading

    from pymilvus import MilvusClient

    import visearch.shared.store as store_module

    settings = StoreSettings(uri=str(tmp_path / "t.db"))
    create = MilvusClient.create_collection
    monkeypatch.setattr(
        MilvusClient, "create_collection", lambda self, *a, index_params=None, **k: create(self, *a, **k)
    )  # stop before the index
    MilvusStore(settings).close()
    monkeypatch.setattr(MilvusClient, "create_collection", create)
    monkeypatch.setattr(store_module, "_INDEX_WAIT_S", 30.0 if creator_finishes else 0.5)
    creator = None
    if creator_finishes:

        def build_indexes() -> None:
            client = MilvusClient(uri=settings.uri)
            collections = store_module.MilvusStore.layout_collections(settings.collection_prefix, "unified")
            for name in dict.fromkeys(collections.values()):
                index = client.prepare_index_params()
                if name == collections["region"]:
                    index.add_index(field_name="vector", metric_type="COSINE", index_type="FLAT")
                else:
                    for field_name in store_module.ITEM_SPACES:
                        index.add_index(field_name=field_name, metric_type="COSINE", index_type="FLAT")
                    index.add_index(
                        field_name=store_module.BM25_FIELD, metric_type="BM25", index_type="SPARSE_INVERTED_INDEX"
                    )
                client.create_index(name, index)

        creator = threading.Timer(1.0, build_indexes)
        creator.start()
    store = MilvusStore(settings)
    try:
        if creator is not None:
            creator.join()
        assert store.layout == "unified"
        built = store._client.describe_index(store.collections["image"], store.vector_fields["image"])["index_type"]
        assert built == ("FLAT" if creator_finishes else settings.index_type)
        rows = make_rows("A", 3, seed=7)
        store.upsert(rows)
        assert store.search("image", rows[0].image_vector, tenant="A", top_k=1)[0].image_id == "img-0"
    finally:
        store.close()


@pytest.mark.milvus_lite
def test_rows_read_with_their_vector_of_a_space_in_one_query(store):
    """rows(space="joint", with_vector=True): the filtered rows' fields plus their joint vectors (what the
    BM25 route needs for the dense text factor); without with_vector no vector is returned. A Lite store
    serialises its calls (not concurrent)."""
    rows = make_rows("A", 4, seed=11)
    store.upsert(rows)
    read = store.rows("A", ["img-0", "img-1", "img-3"], SearchFilter(in_stock=True), space="joint", with_vector=True)
    assert sorted(h.image_id for h in read) == ["img-1"]  # img-0 and img-3 are out of stock
    assert read[0].fields["title"] == "item 1" and read[0].fields["vector"].dtype == np.float32
    np.testing.assert_allclose(read[0].fields["vector"], rows[1].joint_vector, atol=1e-6)
    assert "vector" not in store.rows("A", ["img-1"])[0].fields
    assert store.concurrent is False
