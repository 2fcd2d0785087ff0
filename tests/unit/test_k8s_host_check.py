"""deploy/k8s/cluster.sh's host check (`check-host`, run by `make k8s-down`): after the cluster is gone, the host's
links, addresses, routes, iptables rules and the sysctls the cluster touches must equal the snapshot `up` took.

Run for real in a private network namespace (``unshare --net``): the snapshot is taken there, then a link, an
iptables rule or a per-namespace sysctl is changed there, and the check must name the difference. The host's own
network is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = ROOT / "deploy/k8s/cluster.sh"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for unshare --net")


def check_after(change: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Snapshot, apply ``change`` (shell), run check_host; all inside a fresh network namespace."""
    script = f"""
set -euo pipefail
source {CLUSTER_SH}
mkdir -p "$R"
ip link set lo up
host_snapshot "$R/host.before"
{{ {change}; }} || exit 97
check_host
"""
    return subprocess.run(
        ["unshare", "--net", "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "VISEARCH_K8S_STATE": str(tmp_path)},
    )


@pytest.mark.parametrize(
    "change",
    [":", "iptables -t mangle -S > /dev/null; iptables -t nat -S > /dev/null"],  # tables loaded, nothing in them
)
def test_unchanged_namespace_passes(change: str, tmp_path: Path) -> None:
    result = check_after(change, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "as before up" in result.stdout


@pytest.mark.parametrize(
    ("change", "evidence"),
    [
        ("ip link add vsleft0 type bridge", "vsleft0"),
        (
            "ip link add vsleft1 type bridge; ip addr add 10.250.0.1/32 dev vsleft1; ip link set vsleft1 up",
            "10.250.0.1",
        ),
        ("iptables -t nat -N VSLEFTOVER", "VSLEFTOVER"),
        (  # flipped, whatever the new namespace inherited
            "f=/proc/sys/net/ipv4/ip_forward; echo $((1 - $(cat $f))) > $f",
            "net/ipv4/ip_forward",
        ),
    ],
)
def test_every_kind_of_leftover_fails_the_check(change: str, evidence: str, tmp_path: Path) -> None:
    if "iptables" in change and shutil.which("iptables") is None:
        pytest.fail("iptables missing: deploy/k8s/build.sh packages installs it")
    result = check_after(change, tmp_path)
    assert result.returncode != 97, f"could not make the change: {change}\n{result.stderr}"
    assert result.returncode != 0, f"check_host passed after: {change}\n{result.stdout}"
    assert evidence in result.stdout + result.stderr
    assert "host state differs" in result.stderr
