"""Milvus Lite keeps the index across close and reopen."""

from __future__ import annotations

import pytest

from tests.integration.conftest import LOCAL_FILES
from visearch.embedded import EmbeddedPlatform
from visearch.shared.config import ServiceSettings, StoreSettings
from visearch.v1 import search_pb2

pytestmark = [pytest.mark.models, pytest.mark.milvus_lite]

QUERIES = [search_pb2.SearchRequest(text="dog", top_k=5), search_pb2.SearchRequest(image_id="photo-coffee", top_k=5)]


def _results(platform):
    return [[(h.image_id, round(h.score, 5)) for h in platform.search.Search(q, None).hits] for q in QUERIES]


def test_close_reopen_gives_same_results(built_models, photos, tmp_path):
    """Search results after reopening the database equal those before closing it."""
    settings = StoreSettings(uri=str(tmp_path / "persist.db"))
    with EmbeddedPlatform(
        settings, service_settings=ServiceSettings(tenant="p"), image_settings=LOCAL_FILES
    ) as platform:
        platform.ingest(photos, progress=False)
        before = _results(platform)
        count = platform.store.count(tenant="p")
    with EmbeddedPlatform(settings, service_settings=ServiceSettings(tenant="p")) as reopened:
        assert reopened.store.count(tenant="p") == count == len(photos)
        assert _results(reopened) == before


def test_migrate_moves_a_per_space_catalogue_and_search_results_match(built_models, photos, tmp_path, monkeypatch):
    """A catalogue built in the per_space layout (Milvus 2.3's, in-process BM25) moves into the unified layout
    without re-ingesting: an interrupted run resumes where it stopped, counts and every row verify, and the
    same searches (text with BM25, image) return the same hits and scores afterwards."""
    from visearch.shared.store import MilvusStore
    from visearch.store_migration import migrate

    uri = str(tmp_path / "legacy.db")
    with EmbeddedPlatform(
        StoreSettings(uri=uri, layout="per_space"),
        service_settings=ServiceSettings(tenant="p"),
        image_settings=LOCAL_FILES,
    ) as platform:
        assert platform.store.layout == "per_space" and platform.search.text_index is not None
        platform.ingest(photos, progress=False)
        before = _results(platform)

    calls = {"n": 0}
    upsert_items = MilvusStore.upsert_items

    def fail_on_second_page(self, data):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("interrupted")
        upsert_items(self, data)

    monkeypatch.setattr(MilvusStore, "upsert_items", fail_on_second_page)
    with pytest.raises(RuntimeError, match="interrupted"):
        migrate(StoreSettings(uri=uri), batch_size=5)
    monkeypatch.setattr(MilvusStore, "upsert_items", upsert_items)
    report = migrate(StoreSettings(uri=uri), batch_size=5, samples=len(photos))
    assert (report.rows, report.skipped, report.copied) == (len(photos), 5, len(photos) - 5)
    assert report.verified and report.sampled == len(photos), report.mismatches

    with EmbeddedPlatform(StoreSettings(uri=uri), service_settings=ServiceSettings(tenant="p")) as migrated:
        assert migrated.store.layout == "unified" and migrated.search.text_index is None
        assert migrated.store.count(tenant="p") == len(photos)
        assert _results(migrated) == before
