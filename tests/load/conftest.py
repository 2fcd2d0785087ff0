"""Fixtures of the load test (markers are registered in pyproject.toml)."""

from __future__ import annotations

from tests.integration.conftest import built_models  # noqa: F401  (fixture: fail, not skip, without models)
