"""The Helm chart installed for real on a kube-apiserver + etcd: the CI level of issue 17's Kubernetes checks.

The full run (``make k8s-up && make images && make k8s-e2e``: pods, pod loss, rolling update, drain, HPA,
Prometheus) needs every Kubernetes binary compiled (~30 min cold) and five images built, more than CI's budget.
This module keeps the part that only needs the API server: a real ``kube-apiserver`` (built from the Go module
proxy by ``deploy/k8s/build.sh apiserver``, ~6 min cold) on Debian's etcd, both on 127.0.0.1 (the ``kubernetes``
Service advertises an address that exists nowhere: nothing connects to it). Every object the chart renders is
created, so the API server's own validation (schemas, defaulting, the KEDA and prometheus-operator CRDs' OpenAPI
schemas from their Go modules, admission) accepts it or the test fails. No controllers run, so no pod starts:
that is what ``make k8s-e2e`` shows.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.stack import ROOT, free_port, wait_until

CACHE_BIN = Path(os.environ.get("VISEARCH_K8S_CACHE", Path.home() / ".cache/visearch/k8s")) / "bin"
CHART = ROOT / "helm/visearch"
DEPS_CHART = ROOT / "deploy/k8s/deps"
# The CRDs the production values use, from the same Go modules deploy/tools/install-tools.sh reads schemas from.
CRDS = {
    "github.com/prometheus-operator/prometheus-operator@v0.77.1": [
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
        "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
    ],
    "github.com/kedacore/keda/v2@v2.15.1": [
        "config/crd/bases/keda.sh_scaledobjects.yaml",
        "config/crd/bases/keda.sh_triggerauthentications.yaml",
    ],
}


@dataclass
class KubeAPI:
    """A running API server: its URL, an admin token and a kubeconfig for helm."""

    url: str
    token: str
    kubeconfig: Path

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """One API call; (HTTP status, decoded JSON body)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", "application/json")
        context = ssl._create_unverified_context()  # the API server's self-signed serving certificate
        try:
            with urllib.request.urlopen(req, context=context, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def helm(self, *args: str, timeout: float = 300) -> str:
        """Run helm against this server; its output (AssertionError with the output on failure)."""
        proc = subprocess.run(
            [str(CACHE_BIN / "helm"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig), "HELM_CACHE_HOME": str(self.kubeconfig.parent)},
        )
        assert proc.returncode == 0, f"helm {' '.join(args[:3])}: {proc.stdout}{proc.stderr}"
        return proc.stdout


def _binaries() -> None:
    """kube-apiserver and helm, built by deploy/k8s/build.sh when missing (a failure if that fails, never a skip)."""
    if not ((CACHE_BIN / "kube-apiserver").is_file() and (CACHE_BIN / "helm").is_file()):
        proc = subprocess.run(["bash", str(ROOT / "deploy/k8s/build.sh"), "apiserver"], capture_output=True, text=True)
        assert proc.returncode == 0, (
            f"deploy/k8s/build.sh apiserver failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    if shutil.which("etcd") is None:
        pytest.fail("etcd missing: deploy/local/install-system-packages.sh installs Debian's etcd-server")


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory) -> Iterator[KubeAPI]:
    _binaries()
    work = tmp_path_factory.mktemp("kube-apiserver")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (work / "sa.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (work / "sa.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    token = secrets.token_hex(16)
    (work / "tokens.csv").write_text(f'{token},admin,admin,"system:masters"\n')
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd = subprocess.Popen(
        ["etcd", "--name", "visearch-test", "--data-dir", str(work / "etcd"),
         "--listen-client-urls", f"http://127.0.0.1:{etcd_port}", "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer_port}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
         "--initial-cluster", f"visearch-test=http://127.0.0.1:{peer_port}"],
        stdout=open(work / "etcd.log", "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    apiserver = subprocess.Popen(
        [str(CACHE_BIN / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
         "--bind-address=127.0.0.1", "--advertise-address=10.255.255.1", f"--secure-port={api_port}",
         f"--cert-dir={work / 'certs'}", f"--token-auth-file={work / 'tokens.csv'}",
         "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
         f"--service-account-key-file={work / 'sa.pub'}", f"--service-account-signing-key-file={work / 'sa.key'}",
         "--service-cluster-ip-range=10.96.0.0/24", "--authorization-mode=RBAC", "--allow-privileged=true",
         "--profiling=false"],
        stdout=open(work / "apiserver.log", "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "t",
                        "cluster": {"server": f"https://127.0.0.1:{api_port}", "insecure-skip-tls-verify": True},
                    }
                ],
                "users": [{"name": "admin", "user": {"token": token}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": "admin"}}],
                "current-context": "t",
            }
        )
    )
    kubeconfig.chmod(0o600)
    api = KubeAPI(f"https://127.0.0.1:{api_port}", token, kubeconfig)
    try:
        wait_until(lambda: _ready(api), timeout_s=120, what="kube-apiserver /readyz")
        yield api
    finally:
        for proc in (apiserver, etcd):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _ready(api: KubeAPI) -> bool:
    try:
        req = urllib.request.Request(f"{api.url}/readyz", headers={"Authorization": f"Bearer {api.token}"})
        with urllib.request.urlopen(req, context=ssl._create_unverified_context(), timeout=5) as response:
            return response.read() == b"ok"
    except (OSError, urllib.error.URLError):
        return False


def _install_crds(api: KubeAPI) -> list[str]:
    names = []
    for module, files in CRDS.items():
        proc = subprocess.run(["go", "mod", "download", "-json", module], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"go mod download {module}: {proc.stderr}"
        folder = Path(json.loads(proc.stdout)["Dir"])
        for file in files:
            crd = yaml.safe_load((folder / file).read_text())
            status, body = api.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
            assert status in (201, 409), body
            names.append(crd["metadata"]["name"])
    for name in names:
        wait_until(
            lambda n=name: any(
                c["type"] == "Established" and c["status"] == "True"
                for c in api.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}")[1]
                .get("status", {})
                .get("conditions", [])
            ),
            timeout_s=60,
            what=f"CRD {name} established",
        )
    return names


def _api_path(obj: dict, namespace: str) -> str:
    """The API path of a rendered object (namespaced unless it is one of the chart's cluster-scoped kinds)."""
    group_version, kind = obj["apiVersion"], obj["kind"]
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    plural = {"NetworkPolicy": "networkpolicies", "PodDisruptionBudget": "poddisruptionbudgets"}.get(kind)
    plural = plural or kind.lower() + ("es" if kind.endswith("s") else "s")
    if kind in {"PersistentVolume", "ClusterRole", "ClusterRoleBinding", "Namespace"}:
        return f"{base}/{plural}/{obj['metadata']['name']}"
    return f"{base}/namespaces/{namespace}/{plural}/{obj['metadata']['name']}"


def _manifest_objects(api: KubeAPI, release: str, namespace: str) -> list[dict]:
    text = api.helm("get", "manifest", release, "-n", namespace)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _hooks(api: KubeAPI, release: str, namespace: str) -> list[dict]:
    text = api.helm("get", "hooks", release, "-n", namespace)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _install_and_check(api: KubeAPI, release: str, namespace: str, chart: Path, *values: str) -> dict[str, int]:
    """helm install (hooks created as plain objects: no controller would run their Job), then every object of
    the release must be on the server; returns the count per kind."""
    api.helm("install", release, str(chart), "-n", namespace, "--create-namespace", "--no-hooks", *values)
    for hook in _hooks(api, release, namespace):
        hook["metadata"].pop("annotations", None)
        path = _api_path(hook, namespace).rsplit("/", 1)[0]
        status, body = api.request("POST", path, hook)
        assert status == 201, f"hook {hook['kind']}/{hook['metadata']['name']} refused: {body.get('message')}"
    kinds: dict[str, int] = {}
    for obj in _manifest_objects(api, release, namespace):
        status, body = api.request("GET", _api_path(obj, namespace))
        assert status == 200, f"{obj['kind']}/{obj['metadata']['name']} not on the server: {body.get('message')}"
        kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
    return kinds


def test_local_values_and_deps_install_on_a_real_api_server(kube_api: KubeAPI) -> None:
    deps = _install_and_check(
        kube_api, "deps", "visearch", DEPS_CHART,
        "--set-file", f"prometheus.rules={CHART / 'files/alerts.yaml'}",
    )  # fmt: skip
    assert {"StatefulSet", "Deployment", "Service", "PersistentVolume", "PersistentVolumeClaim", "ConfigMap"} <= set(
        deps
    )
    kinds = _install_and_check(kube_api, "visearch", "visearch", CHART, "-f", str(CHART / "values-local.yaml"))
    assert kinds["Deployment"] >= 9 and kinds["HorizontalPodAutoscaler"] == 1 and kinds["PodDisruptionBudget"] >= 8
    # The thumbnail claim binds to the deps chart's hostPath volume by name (no provisioner needed).
    _, pvc = kube_api.request("GET", "/api/v1/namespaces/visearch/persistentvolumeclaims/visearch-thumbnails")
    assert pvc["spec"]["volumeName"].endswith("-thumbnails")

    # An upgrade to a new image tag changes every visearch Deployment's pod template (a rolling update).
    before = {
        d["metadata"]["name"]: d["metadata"]["generation"]
        for d in kube_api.request("GET", "/apis/apps/v1/namespaces/visearch/deployments")[1]["items"]
        if d["metadata"]["labels"].get("app.kubernetes.io/instance") == "visearch"
    }
    kube_api.helm(
        "upgrade", "visearch", str(CHART), "-n", "visearch", "--no-hooks", "--reuse-values", "--set", "image.tag=0.1.1"
    )
    after = kube_api.request("GET", "/apis/apps/v1/namespaces/visearch/deployments")[1]["items"]
    changed = [
        d
        for d in after
        if d["metadata"]["name"] in before and d["metadata"]["generation"] > before[d["metadata"]["name"]]
    ]
    app_deployments = [d for d in changed if "localhost/visearch/visearch" in json.dumps(d["spec"]["template"])]
    assert app_deployments and all(
        c["image"].endswith(":0.1.1")
        for d in app_deployments
        for c in d["spec"]["template"]["spec"]["containers"]
        if "localhost/visearch/visearch" in c["image"]
    )

    kube_api.helm("uninstall", "visearch", "-n", "visearch", "--no-hooks", "--wait")
    remaining = [
        d["metadata"]["name"]
        for d in kube_api.request("GET", "/apis/apps/v1/namespaces/visearch/deployments")[1]["items"]
        if d["metadata"]["labels"].get("app.kubernetes.io/instance") == "visearch"
    ]
    assert remaining == []


def test_production_values_install_with_the_operator_and_keda_crds(kube_api: KubeAPI) -> None:
    crds = _install_crds(kube_api)
    assert len(crds) == 4
    kinds = _install_and_check(kube_api, "prod", "prod", CHART, "-f", str(CHART / "values-production.yaml"))
    # With the APIs served, the chart renders its monitoring and autoscaling objects, and the CRDs' schemas accept them.
    assert kinds.get("ServiceMonitor", 0) >= 1, kinds
    assert kinds.get("PrometheusRule", 0) == 1, kinds
    assert kinds.get("ScaledObject", 0) >= 1, kinds


def test_the_api_server_refuses_an_invalid_object(kube_api: KubeAPI) -> None:
    """The checks above can fail: a Deployment whose container has no image is refused with a reason."""
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "broken"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}},
        },
    }
    kube_api.request(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bad"}}
    )
    status, body = kube_api.request("POST", "/apis/apps/v1/namespaces/bad/deployments", bad)
    assert status == 422 and "image" in body["message"], body
