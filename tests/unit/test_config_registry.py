"""Unit tests for the model registry (visearch.shared.models.registry) and env-var settings (visearch.shared.config)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import grpc
import pytest
from pydantic import ValidationError

from visearch.shared.config import (
    ConseSettings,
    ImageSettings,
    ModelSettings,
    ServiceSettings,
    StoreSettings,
)
from visearch.shared.errors import ModelNotBuiltError
from visearch.shared.models.registry import ALL_BUILDS, ALL_MODELS, IMAGE_MODEL, TEXT_MODEL, ModelSpec

# --------------------------------------------------------------------------------------------- registry


def spec(**recipe) -> ModelSpec:
    return ModelSpec(name="m", source_package="pkg", source_version="1.0", recipe={"revision": 1, **recipe})


def test_key_is_deterministic_and_matches_documented_hash():
    """key = first 12 hex chars of sha256 over the sorted JSON of name, package, version and recipe."""
    s = spec(opset=17)
    blob = json.dumps({"name": "m", "pkg": "pkg", "ver": "1.0", "recipe": {"revision": 1, "opset": 17}}, sort_keys=True)
    assert s.key == hashlib.sha256(blob.encode()).hexdigest()[:12]
    assert re.fullmatch(r"[0-9a-f]{12}", s.key)
    assert spec(opset=17).key == s.key


def test_recipe_cannot_mask_the_source_version():
    """A recipe entry named like an identity field does not hide the source version from the key."""
    assert ModelSpec("m", "p", "1", {"ver": "x"}).key != ModelSpec("m", "p", "2", {"ver": "x"}).key


def test_key_ignores_recipe_key_order():
    """Two recipes with the same items in a different order have the same key."""
    a = ModelSpec("m", "pkg", "1.0", {"a": 1, "b": [1, 2]})
    b = ModelSpec("m", "pkg", "1.0", {"b": [1, 2], "a": 1})
    assert a.key == b.key


def test_key_changes_when_anything_in_the_recipe_changes():
    """Changing a recipe value, adding a recipe item, or the source version/package/name gives a new key."""
    base = spec(opset=17)
    variants = [
        spec(opset=18),
        spec(opset=17, extra=True),
        ModelSpec("m", "pkg", "1.1", {"revision": 1, "opset": 17}),
        ModelSpec("m", "other", "1.0", {"revision": 1, "opset": 17}),
        ModelSpec("n", "pkg", "1.0", {"revision": 1, "opset": 17}),
    ]
    keys = {base.key, *(v.key for v in variants)}
    assert len(keys) == 1 + len(variants)


def test_directory_layout(tmp_path):
    """A build lives in <cache_dir>/<name>/<key>."""
    assert IMAGE_MODEL.directory(tmp_path) == tmp_path / "efficientnet_lite0" / IMAGE_MODEL.key
    assert IMAGE_MODEL.directory(str(tmp_path)) == IMAGE_MODEL.directory(tmp_path)


def test_shipped_models_have_distinct_keys():
    """Every registered build (models and the taxonomy) has its own name and key, image and text first."""
    assert list(ALL_MODELS)[:2] == [IMAGE_MODEL, TEXT_MODEL]
    assert len({s.name for s in ALL_BUILDS}) == len({s.key for s in ALL_BUILDS}) == len(ALL_BUILDS) >= 8


def test_every_build_has_a_builder():
    """`models build` knows how to build everything in the registry, and nothing else."""
    from visearch.offline.models.build import BUILDERS

    assert set(BUILDERS) == {s.name for s in ALL_BUILDS}


def test_registry_changes_key_only_for_non_pypi_sources():
    """The registry field enters the key only when it is not PyPI (existing builds keep their folders)."""
    pypi = ModelSpec("m", "pkg", "1.0", {"revision": 1})
    assert pypi.key == ModelSpec("m", "pkg", "1.0", {"revision": 1}, registry="pypi").key
    assert pypi.key != ModelSpec("m", "pkg", "1.0", {"revision": 1}, registry="npm").key


def test_locate_missing_build_raises_model_not_built(tmp_path):
    """No build folder -> ModelNotBuiltError whose message tells the user to run `visearch models build`."""
    with pytest.raises(ModelNotBuiltError) as info:
        IMAGE_MODEL.locate(tmp_path)
    message = str(info.value)
    assert "visearch models build" in message
    assert "efficientnet_lite0" in message and IMAGE_MODEL.key in message
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.reason == "model_not_built"


def test_locate_incomplete_build_raises(tmp_path):
    """A build folder without meta.json (an interrupted build) counts as not built."""
    folder = TEXT_MODEL.directory(tmp_path)
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"partial")
    with pytest.raises(ModelNotBuiltError):
        TEXT_MODEL.locate(tmp_path)


def test_locate_finished_build_returns_folder(tmp_path):
    """With meta.json present, locate returns the build folder; a different recipe's build is not found."""
    folder = TEXT_MODEL.directory(tmp_path)
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text("{}")
    assert TEXT_MODEL.locate(tmp_path) == folder
    changed = ModelSpec(
        TEXT_MODEL.name,
        TEXT_MODEL.source_package,
        TEXT_MODEL.source_version,
        {**TEXT_MODEL.recipe, "revision": TEXT_MODEL.recipe["revision"] + 1},
    )
    with pytest.raises(ModelNotBuiltError):
        changed.locate(tmp_path)


# --------------------------------------------------------------------------------------------- settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No VISEARCH_* variable from the outer environment leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("VISEARCH_"):
            monkeypatch.delenv(name)


def test_settings_defaults():
    """Every setting has a default, so the embedded mode needs no configuration."""
    assert ServiceSettings().grpc_port == 50051
    assert StoreSettings().uri.endswith("milvus.db")
    assert ModelSettings().cache_dir.name == "models"
    assert ImageSettings().max_pixels == 40_000_000 and ImageSettings().allow_file_uris is False
    assert ConseSettings().top_t == 10


def test_settings_read_env(monkeypatch, tmp_path):
    """VISEARCH_MILVUS_URI, VISEARCH_MODEL_CACHE_DIR and VISEARCH_GRPC_PORT are read and typed."""
    monkeypatch.setenv("VISEARCH_MILVUS_URI", "http://milvus:19530")
    monkeypatch.setenv("VISEARCH_MODEL_CACHE_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("VISEARCH_GRPC_PORT", "6000")
    monkeypatch.setenv("VISEARCH_IMAGE_ALLOW_FILE_URIS", "true")
    assert StoreSettings().uri == "http://milvus:19530"
    assert ModelSettings().cache_dir == tmp_path / "models"
    assert isinstance(ModelSettings().cache_dir, Path)
    assert ServiceSettings().grpc_port == 6000
    assert ImageSettings().allow_file_uris is True


def test_prefixes_do_not_cross_over(monkeypatch):
    """A MODEL_ or MILVUS_ variable does not set a ServiceSettings field (each class has its own prefix)."""
    monkeypatch.setenv("VISEARCH_MILVUS_TENANT", "x")
    monkeypatch.setenv("VISEARCH_TENANT", "shop")
    assert ServiceSettings().tenant == "shop"
    monkeypatch.setenv("VISEARCH_URI", "/wrong.db")
    assert StoreSettings().uri != "/wrong.db"


@pytest.mark.parametrize(
    ("var", "value", "cls"),
    [
        ("VISEARCH_GRPC_PORT", "70000", ServiceSettings),
        ("VISEARCH_GRPC_PORT", "-1", ServiceSettings),
        ("VISEARCH_GRPC_PORT", "http", ServiceSettings),
        ("VISEARCH_IMAGE_MAX_BYTES", "0", ImageSettings),
        ("VISEARCH_MODEL_IMAGE_BATCH_SIZE", "1000", ModelSettings),
        ("VISEARCH_CONSE_TOP_T", "0", ConseSettings),
    ],
)
def test_invalid_env_values_raise_validation_error(monkeypatch, var, value, cls):
    """Out-of-range or mistyped values are refused at start-up with a pydantic ValidationError."""
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError):
        cls()


def test_the_int8_text_encoder_is_in_process_only():
    """text_int8 with a Triton address is a configuration error (Triton serves the fp32 model)."""
    from pydantic import ValidationError

    assert ModelSettings(text_int8=True).text_int8
    with pytest.raises(ValidationError, match="in-process"):
        ModelSettings(text_int8=True, triton_url="127.0.0.1:8001")
