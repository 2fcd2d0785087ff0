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
    with EmbeddedPlatform(settings, service_settings=ServiceSettings(tenant="p"), image_settings=LOCAL_FILES) as platform:
        platform.ingest(photos, progress=False)
        before = _results(platform)
        count = platform.store.count(tenant="p")
    with EmbeddedPlatform(settings, service_settings=ServiceSettings(tenant="p")) as reopened:
        assert reopened.store.count(tenant="p") == count == len(photos)
        assert _results(reopened) == before
