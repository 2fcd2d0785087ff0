"""The chart's alert rules behave as intended: promtool's rule unit tests pass, and cover every alert.

helm/visearch/files/alerts_test.yaml feeds synthetic series to helm/visearch/files/alerts.yaml (the plain
rules file the PrometheusRule template embeds) and states, per alert, when it fires with which labels and
annotations, and when it must not (below its threshold, under its ``for``, without traffic). promtool comes
from deploy/tools/install-prometheus.sh, the same unpacked Debian package the Prometheus integration test uses.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "helm" / "visearch" / "files"
ALERTS = FILES / "alerts.yaml"
ALERT_TESTS = FILES / "alerts_test.yaml"
INSTALL_PROMETHEUS = ROOT / "deploy" / "tools" / "install-prometheus.sh"


def _tools_bin() -> Path:
    """Where install-prometheus.sh puts promtool: ${VISEARCH_VAR_DIR:-var}/tools/bin."""
    return Path(os.environ.get("VISEARCH_VAR_DIR") or ROOT / "var") / "tools" / "bin"


@pytest.fixture(scope="module")
def promtool() -> Path:
    """promtool, installed by deploy/tools/install-prometheus.sh when missing (a failure, never a skip)."""
    path = _tools_bin() / "promtool"
    if not os.access(path, os.X_OK):
        proc = subprocess.run(
            ["bash", str(INSTALL_PROMETHEUS)], capture_output=True, text=True, timeout=600, check=False
        )
        if proc.returncode != 0 or not os.access(path, os.X_OK):
            pytest.fail(
                f"promtool is missing at {path} and `bash {INSTALL_PROMETHEUS.relative_to(ROOT)}` did not install it "
                f"(exit {proc.returncode}; it needs apt-get and Debian's `prometheus` package):\n"
                f"{proc.stdout}{proc.stderr}",
                pytrace=False,
            )
    return path


def _alert_names() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_rule_tests_pass(promtool: Path):
    """`promtool test rules alerts_test.yaml` passes: each alert fires, or stays silent, exactly as stated."""
    proc = subprocess.run(
        [str(promtool), "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True, timeout=120, check=False
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 or "SUCCESS" not in output:
        pytest.fail(f"promtool test rules {ALERT_TESTS.relative_to(ROOT)} failed:\n{output}", pytrace=False)


def test_every_alert_has_a_firing_and_a_silent_case():
    """Each alert of alerts.yaml has a case where it fires and one where it must not; no case names an unknown alert.

    promtool passes a case that expects no alert for a name no rule has, so a renamed alert would leave its
    silent cases passing for nothing: the names must match both ways.
    """
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    assert tests["rule_files"] == ["alerts.yaml"], "alerts_test.yaml must test alerts.yaml (beside it) only"
    alerts = _alert_names()
    assert alerts and len(alerts) == len(set(alerts)), f"alert names missing or repeated: {alerts}"
    firing: set[str] = set()
    silent: set[str] = set()
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    problems = [
        f"{what}: {sorted(names)}"
        for what, names in (
            ("cases for alerts that alerts.yaml lacks", (firing | silent) - set(alerts)),
            ("alerts with no firing case", set(alerts) - firing),
            ("alerts with no case where they must not fire (exp_alerts: [])", set(alerts) - silent),
        )
        if names
    ]
    if problems:
        pytest.fail(
            f"{ALERT_TESTS.relative_to(ROOT)} does not cover {ALERTS.name}:\n" + "\n".join(problems), pytrace=False
        )


def test_every_runbook_link_has_its_anchor_in_the_operations_guide():
    """Each alert's runbook_url (docs/operations.md#<anchor>) lands on a section of the runbook."""
    rules = yaml.safe_load(ALERTS.read_text())
    doc = (ROOT / "docs" / "operations.md").read_text()
    missing = sorted(
        f"{rule['alert']}: {rule['annotations']['runbook_url']}"
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule
        and f'<a id="{rule["annotations"]["runbook_url"].removeprefix("docs/operations.md#")}"></a>' not in doc
    )
    assert not missing, f"runbook anchors missing from docs/operations.md: {missing}"
