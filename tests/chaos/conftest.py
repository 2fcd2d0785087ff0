"""Markers of the fault tests (also listed in pyproject.toml; registering them here keeps
``--strict-markers`` happy when this folder runs on its own)."""

from __future__ import annotations

from tests.integration.conftest import built_models  # noqa: F401  (fixture: fail, not skip, without models)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "chaos: fault injection against a private local stack (VISEARCH_CHAOS_SCALE sizes it)")
    config.addinivalue_line("markers", "load: bounded load test against a private local stack (VISEARCH_LOAD_* size it)")
