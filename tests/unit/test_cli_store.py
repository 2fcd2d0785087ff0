"""`visearch store info|migrate` and `visearch health --db` on real Milvus Lite files (typer's CliRunner)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.unit.test_store_filter import make_rows
from visearch.cli import app
from visearch.shared.config import StoreSettings
from visearch.shared.store import MilvusStore

pytestmark = pytest.mark.milvus_lite
runner = CliRunner()


def test_health_and_info_state_the_layout_and_migrate_moves_the_catalogue(tmp_path):
    db = str(tmp_path / "c.db")
    old = MilvusStore(StoreSettings(uri=db, layout="per_space"))
    old.upsert(make_rows("A", 7, seed=3))
    old.close()

    health = runner.invoke(app, ["health", "--db", db])
    assert health.exit_code == 0 and "layout per_space" in health.output and "ranking process" in health.output
    info = runner.invoke(app, ["store", "info", "--db", db])
    assert info.exit_code == 0 and "per_space" in info.output and "images        7" in info.output

    migrated = runner.invoke(app, ["store", "migrate", "--db", db, "--no-progress", "--drop-legacy", "--samples", "7"])
    assert migrated.exit_code == 0, migrated.output
    assert "copied 7" in migrated.output and "old collections dropped" in migrated.output
    health = runner.invoke(app, ["health", "--db", db])
    assert health.exit_code == 0 and "layout unified" in health.output and "BM25 in Milvus" in health.output

    again = runner.invoke(app, ["store", "migrate", "--db", db, "--no-progress"])
    assert again.exit_code == 2 and "no per_space catalogue" in again.output


def test_health_needs_something_to_check():
    assert runner.invoke(app, ["health"]).exit_code == 2
