"""The `visearch` command line end to end: ingest a folder with metadata, search with --json and filters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.models, pytest.mark.milvus_lite]


def visearch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "visearch", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_ingest_folder_with_metadata_then_search(built_models, photos, tmp_path):
    """Metadata fields reach the index and the filters; bad files are reported; search prints JSON hits."""
    folder = tmp_path / "shop"
    (folder / "pets").mkdir(parents=True)
    by_id = {p.image_id: p for p in photos}
    shutil.copy(by_id["photo-dog"].uri, folder / "pets" / "dog.jpg")
    shutil.copy(by_id["photo-chelsea"].uri, folder / "pets" / "cat.png")
    shutil.copy(by_id["photo-coffee"].uri, folder / "mug.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    metadata = tmp_path / "products.jsonl"
    metadata.write_text(
        "\n".join(
            json.dumps(row)
            for row in [
                {"image_id": "pets/dog", "title": "Dog poster", "category": "posters", "price": 25, "in_stock": True},
                {"image_id": "pets/cat", "title": "Cat poster", "category": "posters", "price": 30, "in_stock": False},
                {"file": "mug.png", "title": "Coffee mug", "category": "kitchen", "price": 12.5, "brand": "acme"},
            ]
        )
    )
    env = {**os.environ, "VISEARCH_MILVUS_URI": str(tmp_path / "cli.db")}

    ingest = visearch("ingest", str(folder), "--metadata", str(metadata), "--no-progress", env=env)
    assert ingest.returncode == 0, ingest.stderr
    assert "indexed 3, failed 1" in ingest.stdout
    assert "broken: truncated_image" in ingest.stdout or "broken: undecodable_image" in ingest.stdout

    out = visearch("search", "--text", "a cup of coffee", "-k", "3", "--json", env=env)
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)["hits"]
    assert hits[0]["image_id"] == "mug" and hits[0]["title"] == "Coffee mug" and hits[0]["brand"] == "acme"

    out = visearch("search", "--id", "pets/dog", "--category", "posters", "--in-stock", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout).get("hits", []) == []  # the only other poster is out of stock

    out = visearch("search", "--id", "no/such", env=env)
    assert out.returncode == 2 and "NOT_FOUND" in out.stdout
