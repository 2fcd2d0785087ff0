"""The package layout: pyproject's explicit package list is complete, and only `visearch.*` names are importable."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"visearch": "visearch", "shared": "visearch.shared", "services": "visearch.services"}


def setuptools_config() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def source_packages() -> set[str]:
    """Import names of every folder under visearch/, shared/ and services/ that holds an __init__.py."""
    names = set()
    for folder, prefix in ROOTS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            names.add(".".join([prefix, *rel.parts]))
    return names


def test_source_tree_has_the_expected_roots():
    """Sanity: the walk finds the three roots and at least one sub-package under each mapped root."""
    found = source_packages()
    assert {"visearch", "visearch.shared", "visearch.services", "visearch.v1"} <= found
    assert any(n.startswith("visearch.shared.") for n in found)
    assert any(n.startswith("visearch.services.") for n in found)


def test_every_package_folder_is_listed_in_pyproject():
    """Each folder with an __init__.py is in [tool.setuptools] packages (else it is missing from wheels)."""
    listed = set(setuptools_config()["packages"])
    assert sorted(source_packages() - listed) == []


def test_every_listed_package_exists():
    """Each name in [tool.setuptools] packages maps to a folder with an __init__.py (no stale entries)."""
    assert sorted(set(setuptools_config()["packages"]) - source_packages()) == []


def test_package_dir_maps_the_top_level_folders():
    """package-dir maps visearch.shared -> shared and visearch.services -> services."""
    assert setuptools_config()["package-dir"] == {
        "visearch": "visearch",
        "visearch.shared": "shared",
        "visearch.services": "services",
    }


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``python -c code`` with this interpreter in ``cwd`` (no PYTHONPATH), capturing output."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_namespaced_packages_import_from_outside_the_repo(tmp_path):
    """From another directory, visearch.shared/services/v1 import and come from the repo's folders."""
    result = run_python(
        "import visearch.shared.models, visearch.services.indexer, visearch.v1.events_pb2 as e, visearch.shared as s;"
        "print(s.__file__)",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve() == REPO / "shared" / "__init__.py"


@pytest.mark.parametrize("name", ["shared", "services"])
def test_top_level_shared_and_services_are_not_importable(tmp_path, name):
    """`import shared` / `import services` fail outside the repo root (only visearch.* names are installed)."""
    result = run_python(f"import {name}", tmp_path)
    assert result.returncode != 0
    assert "ModuleNotFoundError" in result.stderr and repr(name) in result.stderr
