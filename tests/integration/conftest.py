"""Fixtures for integration tests: real built models, real photos, real Milvus Lite databases.

Models must be built first (`make test` does it). A missing model is a failure, not a skip.
"""

from __future__ import annotations

import io
import json
import os

import pytest
from PIL import Image

from visearch.embedded import EmbeddedPlatform
from visearch.offline.datasets import photo_catalogue
from visearch.shared.config import ImageSettings, ModelSettings, ServiceSettings, StoreSettings
from visearch.shared.models.registry import ALL_MODELS

# These tests check what the search computes, not how fast: the query signals' time budgets (a latency guard,
# unit-tested in tests/unit/test_understanding.py and measured by `make bench`) are lifted, so a signal is not
# skipped because the shared CI machine is slow (the first OCR call of a process takes ~150 ms here). Set
# before any settings object is built; services started as processes inherit it.
os.environ.setdefault(
    "VISEARCH_RANKING_SIGNAL_BUDGETS_MS",
    json.dumps({"pixels": 60000, "main_region_embedding": 60000, "classes": 60000, "text": 60000, "objects": 60000}),
)

# The photos are ingested by local path: services refuse file URIs unless this is set.
LOCAL_FILES = ImageSettings(allow_file_uris=True)
REQUIRED_PHOTOS = {"photo-dog", "photo-coffee", "photo-chelsea", "photo-astronaut", "photo-china", "photo-eagle"}


@pytest.fixture(scope="session")
def built_models() -> None:
    """Fail (not skip) with a clear message when the ONNX models are missing."""
    cache = ModelSettings().cache_dir
    for spec in ALL_MODELS:
        spec.locate(cache)  # raises ModelNotBuiltError naming `visearch models build`


@pytest.fixture(scope="session")
def photos():
    """The real colour photos shipped by scikit-image, scikit-learn and Debian darknet."""
    items = photo_catalogue()
    missing = REQUIRED_PHOTOS - {p.image_id for p in items}
    assert not missing, f"photos missing (run make setup): {sorted(missing)}"
    return items


@pytest.fixture(scope="session")
def photo_platform(built_models, photos, tmp_path_factory):
    """An embedded platform whose Milvus Lite database holds the photo catalogue (tenant 'default')."""
    db = tmp_path_factory.mktemp("photos") / "photos.db"
    platform = EmbeddedPlatform(
        StoreSettings(uri=str(db)), service_settings=ServiceSettings(tenant="default"), image_settings=LOCAL_FILES
    )
    report = platform.ingest(photos, progress=False)
    assert report.indexed == len(photos) and not report.failed, report.failed
    yield platform
    platform.close()


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    """Encode an RGB image as JPEG."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
