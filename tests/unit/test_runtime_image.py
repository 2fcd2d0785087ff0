"""The serving code imports nothing from the offline tooling or the build-only extras (runtime image contract)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECK = Path(__file__).resolve().parents[2] / "deploy" / "docker" / "check_runtime.py"


def test_runtime_modules_import_no_build_only_package():
    # A fresh interpreter: this test process may already hold torch or the offline package from other tests.
    proc = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "0 problem(s)" in proc.stdout


def test_dockerfile_runtime_stage_drops_offline_tooling_and_checks_it():
    dockerfile = (CHECK.parent / "Dockerfile").read_text()
    runtime = dockerfile.split(" AS runtime", 1)[1]
    assert "check_runtime.py --image" in runtime
    assert "/offline" in runtime and "rm -rf" in runtime
