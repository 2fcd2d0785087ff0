"""`make k8s-e2e`: the Helm chart installed on the local one-node cluster (deploy/k8s), exercised for real.

Steps, each timed (figures to ``reports/k8s-e2e.json``):

1. the local images (``make images``) imported into the node; the deps chart (Kafka, Milvus, Prometheus,
   deploy/k8s/deps) and the visearch chart (``helm/visearch/values-local.yaml``) installed with ``--wait``;
2. real photos and Fashion-MNIST products published as ImageEvents from the host into the in-cluster Kafka (through a loopback relay to
   the broker's NodePort), while an embedding pod, the indexer pod and the Kafka pod are deleted mid-stream;
   then every published image is stored exactly once (Milvus read through a relay) and the lag is back to 0;
3. a search through ``kubectl port-forward`` of the ranking Service finds a published photo at rank 1;
4. ``helm upgrade`` to a new image tag (a rolling update) while searches run through the ranking Service
   (its ClusterIP, reached by a relay): failed searches are counted;
5. ``kubectl drain`` of the ranking pods stops at their PodDisruptionBudget (one of two evicted);
6. a bounded search load scales the ranking HPA out (metrics-server);
7. a second embedding pod raises search throughput (query load balanced over the headless Service);
8. the in-cluster Prometheus scrapes every visearch pod and has the chart's alert rules loaded.

A failed check or a missing tool fails the run (exit 1) with the reason; nothing is skipped. The releases and
the namespace are removed at the end (``K8S_E2E_KEEP=1`` keeps them). Needs root (the relay enters the
cluster's network namespace) and a running cluster (``make k8s-up``).

    python -m tests.k8s.e2e [--images N] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[2]
CACHE_BIN = Path(os.environ.get("VISEARCH_K8S_CACHE", Path.home() / ".cache/visearch/k8s")) / "bin"
KUBECTL, HELM = str(CACHE_BIN / "kubectl"), str(CACHE_BIN / "helm")
KUBECONFIG = ROOT / "var/k8s/pki/host.kubeconfig"
NETNS = os.environ.get("K8S_NETNS", "visearch-k8s")
NODE_IP = os.environ.get("NODE_IP", "10.245.255.1")
NODE = "visearch-node"
NS, RELEASE, DEPS = "visearch", "visearch", "deps"
VERSION = "0.1.0"
UPGRADE_TAG = "0.1.0-e2e"
IMAGES = [
    f"localhost/visearch/visearch:{VERSION}",
    "localhost/visearch/kafka:4.3.1",
    "localhost/visearch/milvus:2.3.5",
    f"localhost/visearch/triton:{VERSION}",
    "localhost/visearch/prometheus:3.4.2",
]
KAFKA_HOST_PORT, KAFKA_NODE_PORT = 19092, 30092
VOLUMES = ROOT / "var/k8s/volumes"
TENANT = "k8s-e2e"
REPORT = ROOT / "reports/k8s-e2e.json"
SERVICE_UID = 10001


class E2EFailure(RuntimeError):
    """A check of the run failed (the message says which and why)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(*args: str, timeout: float = 600, check: bool = True, env: dict | None = None) -> str:
    """Run a command; its stdout. A non-zero exit raises E2EFailure with the command's output."""
    full_env = {**os.environ, "KUBECONFIG": str(KUBECONFIG), **(env or {})}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise E2EFailure(
            f"{' '.join(args[:6])} ... exit {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return proc.stdout


def kubectl(*args: str, timeout: float = 300, check: bool = True) -> str:
    return run(KUBECTL, "-n", NS, *args, timeout=timeout, check=check)


def kjson(*args: str) -> dict:
    return json.loads(kubectl(*args, "-o", "json"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, predicate, timeout: float, interval: float = 2.0):
    """Poll ``predicate`` until it returns a truthy value (returned); E2EFailure after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 (the thing waited for is still starting)
            last_error = exc
        time.sleep(interval)
    raise E2EFailure(
        f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last_error})" if last_error else "")
    )


class Steps:
    """Wall-clock seconds of each step, in order."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str):
        log(f"== {name}")
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - start, 1)
            log(f"   {name}: {self.seconds[name]} s")


@contextmanager
def relay(pairs: list[tuple[int, str]]):
    """deploy/k8s/relay.py for ``(host port, namespace address)`` pairs; stopped by its PID on exit."""
    args = [sys.executable, str(ROOT / "deploy/k8s/relay.py"), "--netns", NETNS]
    for port, target in pairs:
        args += ["--listen", f"127.0.0.1:{port}", "--target", target]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for port, _ in pairs:
            wait_until(
                f"relay port {port}",
                lambda p=port: socket.create_connection(("127.0.0.1", p), 1).close() or True,
                20,
                0.2,
            )
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def port_forward(target: str, remote_port: int):
    """``kubectl port-forward`` of ``target`` (e.g. svc/x) to a free host port (yielded); stopped by PID."""
    port = free_port()
    proc = subprocess.Popen(
        [KUBECTL, "-n", NS, "port-forward", "--address", "127.0.0.1", target, f"{port}:{remote_port}"],
        env={**os.environ, "KUBECONFIG": str(KUBECONFIG)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(
            f"port-forward {target}", lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True, 30, 0.3
        )
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def cluster_ip(service: str) -> str:
    return kjson("get", "svc", service)["spec"]["clusterIP"]


def ready_pods(component: str) -> list[str]:
    pods = kjson("get", "pods", "-l", f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}")
    return [
        p["metadata"]["name"]
        for p in pods["items"]
        if p["metadata"].get("deletionTimestamp") is None
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]


def preflight() -> None:
    for tool in (KUBECTL, HELM):
        if not Path(tool).is_file():
            raise E2EFailure(f"missing {tool}: run make k8s-build")
    for tool in ("podman", "ip"):
        if shutil.which(tool) is None:
            raise E2EFailure(f"missing {tool}: run deploy/k8s/build.sh packages")
    if os.geteuid() != 0:
        raise E2EFailure("needs root (the relay enters the cluster's network namespace)")
    if run(KUBECTL, "get", "--raw", "/readyz", check=False).strip() != "ok":
        raise E2EFailure(f"no cluster answers at {KUBECONFIG}: run make k8s-up")
    missing = [image for image in IMAGES if subprocess.run(["podman", "image", "exists", image]).returncode != 0]
    if missing:
        raise E2EFailure(f"images missing: {', '.join(missing)}: run make images")


def install(report: dict) -> None:
    installed = run(HELM, "list", "-n", NS, "-q", check=False).split()
    if DEPS not in installed and VOLUMES.exists():
        shutil.rmtree(VOLUMES)  # a previous run's broker log and Milvus data: start from empty
    for sub in ("kafka", "milvus", "thumbnails"):
        (VOLUMES / sub).mkdir(parents=True, exist_ok=True)
    os.chown(VOLUMES / "thumbnails", SERVICE_UID, SERVICE_UID)  # the indexer (uid 10001) writes thumbnails
    run(KUBECTL, "create", "namespace", NS, check=False)
    run(
        HELM, "upgrade", "--install", DEPS, str(ROOT / "deploy/k8s/deps"), "-n", NS,
        "--set", f"storage.hostPathRoot={VOLUMES}",
        "--set-file", f"prometheus.rules={ROOT / 'helm/visearch/files/alerts.yaml'}",
        "--wait", "--timeout", "10m", timeout=700,
    )  # fmt: skip
    run(
        HELM, "upgrade", "--install", RELEASE, str(ROOT / "helm/visearch"), "-n", NS,
        "-f", str(ROOT / "helm/visearch/values-local.yaml"), "--wait", "--timeout", "20m", timeout=1300,
    )  # fmt: skip
    report["pods"] = len(kjson("get", "pods")["items"])
    report["restarts_at_install"] = restarts()


def restarts() -> dict[str, int]:
    """Container restarts per pod (non-zero only), with the last termination reason."""
    result = {}
    for pod in kjson("get", "pods")["items"]:
        for status in pod["status"].get("containerStatuses", []):
            if status.get("restartCount"):
                reason = (status.get("lastState", {}).get("terminated") or {}).get("reason", "")
                result[f"{pod['metadata']['name']}/{status['name']} ({reason})"] = status["restartCount"]
    return result


def publish(dataset: str, limit: int, bootstrap: str) -> None:
    run(
        str(ROOT / ".venv/bin/visearch"), "publish", "--dataset", dataset, "--limit", str(limit),
        "--tenant", TENANT, "--bootstrap", bootstrap, timeout=300,
    )  # fmt: skip


def delete_and_recover(component: str, selector: str) -> float:
    """Delete one pod of ``selector`` (not waiting) and return seconds until a replacement is Ready."""
    pods = kjson("get", "pods", "-l", selector)["items"]
    if not pods:
        raise E2EFailure(f"no pod matches {selector}")
    victim = pods[0]["metadata"]["name"]
    log(f"   deleting pod {victim} ({component})")
    start = time.monotonic()
    kubectl("delete", "pod", victim, "--wait=false")

    def replaced() -> bool:
        items = kjson("get", "pods", "-l", selector)["items"]
        return any(
            p["metadata"]["name"] != victim or p["metadata"]["uid"] != pods[0]["metadata"]["uid"]
            for p in items
            if p["metadata"].get("deletionTimestamp") is None
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        )

    wait_until(f"a Ready replacement of {victim}", replaced, 600, 1.0)
    return round(time.monotonic() - start, 1)


def ingest_with_pod_loss(report: dict, images: int) -> None:
    """Publish the real photos, delete an embedding and the indexer pod, publish Fashion-MNIST products up to
    ``images`` events in all, delete the Kafka pod; then check exactly-once storage and zero lag."""
    from tests.chaos.harness import KafkaProbe, StoreProbe
    from visearch.shared.config import KafkaSettings

    stages = ["detection", "embedding", "ocr", "classification", "indexer"]
    milvus_port = free_port()
    bootstrap = f"127.0.0.1:{KAFKA_HOST_PORT}"
    pairs = [(KAFKA_HOST_PORT, f"{NODE_IP}:{KAFKA_NODE_PORT}"), (milvus_port, f"{cluster_ip('milvus')}:19530")]
    recovery: dict[str, float] = {}
    with relay(pairs):
        kafka = KafkaProbe(KafkaSettings(bootstrap=bootstrap, topic_prefix="visearch"), stages)
        store = StoreProbe(f"http://127.0.0.1:{milvus_port}", "visearch")
        try:
            from visearch.offline import datasets

            first = min(len(datasets.photo_catalogue()), images)
            publish("photos", first, bootstrap)
            wait_until("the first stored images", lambda: (store.count(TENANT) or 0) > 0, 600)
            recovery["embedding"] = delete_and_recover(
                "embedding", f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=embedding"
            )
            recovery["indexer"] = delete_and_recover(
                "indexer", f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=indexer"
            )
            if images > first:
                publish("fashion-mnist", images - first, bootstrap)
            recovery["kafka"] = delete_and_recover("kafka", "app.kubernetes.io/name=kafka")
            log(f"   pod recovery (s): {recovery}")
            start = time.monotonic()
            wait_until(
                f"{images} stored images and zero lag",
                lambda: (store.count(TENANT) or 0) >= images and kafka.total_lag() == 0,
                1200,
                5.0,
            )
            drained_s = round(time.monotonic() - start, 1)
            ids = store.ids(TENANT)
            dlq = kafka.dlq_sizes() or {}
            lags = kafka.lags()
        finally:
            kafka.close()
            store.close()
    duplicates, stored = len(ids) - len(set(ids)), len(set(ids))
    report["ingest"] = {
        "published": images,
        "stored": stored,
        "duplicates": duplicates,
        "lost": images - stored,
        "dlq": dlq,
        "lag_after": lags,
        "recovery_s": recovery,
        "drain_after_last_deletion_s": drained_s,
    }
    log(f"   ingest: {report['ingest']}")
    if duplicates or stored != images or any(dlq.values()):
        raise E2EFailure(f"ingest not exactly once: {report['ingest']}")


def _photo(index: int) -> tuple[str, bytes]:
    from visearch.offline import datasets

    item = datasets.photo_catalogue()[index]
    return item.image_id, item.read_bytes()


def search_port_forward(report: dict) -> None:
    from visearch.v1 import common_pb2, search_pb2, search_pb2_grpc

    image_id, content = _photo(3)
    with port_forward(f"svc/{RELEASE}-ranking", 50051) as port, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        start = time.monotonic()
        response = stub.Search(
            search_pb2.SearchRequest(image=common_pb2.Image(content=content), top_k=5, tenant=TENANT), timeout=60
        )
        image_ms = round((time.monotonic() - start) * 1000, 1)
        text = stub.Search(search_pb2.SearchRequest(text="a dog", top_k=5, tenant=TENANT), timeout=60)
    top = [hit.image_id for hit in response.hits]
    report["search"] = {"query": image_id, "top": top, "image_ms": image_ms, "text_hits": len(text.hits)}
    log(f"   search: {report['search']}")
    if not top or top[0] != image_id or not text.hits:
        raise E2EFailure(f"search through the port-forwarded ranking Service: {report['search']}")


class Searchers:
    """``clients`` threads sending image searches to ``address`` back to back (or at ``rate`` each) until stopped."""

    def __init__(self, address: str, clients: int, rate: float | None = None, request=None) -> None:
        from visearch.v1 import common_pb2, search_pb2, search_pb2_grpc

        if request is None:
            _, content = _photo(5)
            request = search_pb2.SearchRequest(image=common_pb2.Image(content=content), top_k=10, tenant=TENANT)
        self.request = request
        self.stub_class, self.address, self.rate = search_pb2_grpc.SearchServiceStub, address, rate
        self.ok, self.failed, self.errors = 0, 0, []
        self.lock, self.stop_event = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        # A channel per client, re-created after a failure (a closed relay connection stays closed)
        channel = grpc.insecure_channel(self.address)
        while not self.stop_event.is_set():
            t0 = time.monotonic()
            try:
                self.stub_class(channel).Search(self.request, timeout=30, wait_for_ready=True)
                with self.lock:
                    self.ok += 1
            except grpc.RpcError as exc:
                with self.lock:
                    self.failed += 1
                    self.errors.append(f"{exc.code().name}: {exc.details()}"[:200])
                channel.close()
                channel = grpc.insecure_channel(self.address)
            if self.rate:
                self.stop_event.wait(max(0.0, 1 / self.rate - (time.monotonic() - t0)))
        channel.close()

    def __enter__(self) -> Searchers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(60)


def rolling_upgrade(report: dict) -> None:
    """helm upgrade to UPGRADE_TAG (the same build, retagged) while searches run; failed searches counted."""
    run("podman", "tag", IMAGES[0], f"localhost/visearch/visearch:{UPGRADE_TAG}")
    run(
        "bash", str(ROOT / "deploy/k8s/cluster.sh"), "import", f"localhost/visearch/visearch:{UPGRADE_TAG}", timeout=900
    )
    port = free_port()
    with relay([(port, f"{cluster_ip(f'{RELEASE}-ranking')}:50051")]), Searchers(f"127.0.0.1:{port}", 2, 2.0) as load:
        time.sleep(5)
        start = time.monotonic()
        run(
            HELM, "upgrade", RELEASE, str(ROOT / "helm/visearch"), "-n", NS, "--reuse-values",
            "--set", f"image.tag={UPGRADE_TAG}", "--wait", "--timeout", "20m", timeout=1300,
        )  # fmt: skip
        upgrade_s = round(time.monotonic() - start, 1)
        time.sleep(5)
    images = {
        c["image"]
        for p in kjson("get", "pods", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
        if p["metadata"].get("deletionTimestamp") is None
        for c in p["spec"]["containers"]
        if "localhost/visearch/visearch" in c["image"]
    }
    report["rolling_update"] = {
        "seconds": upgrade_s,
        "searches_ok": load.ok,
        "searches_failed": load.failed,
        "errors": sorted(set(load.errors))[:5],
        "images_after": sorted(images),
    }
    log(f"   rolling update: {report['rolling_update']}")
    if images != {f"localhost/visearch/visearch:{UPGRADE_TAG}"}:
        raise E2EFailure(f"pods not all on {UPGRADE_TAG}: {images}")
    if load.failed or not load.ok:
        raise E2EFailure(f"searches failed during the rolling update: {report['rolling_update']}")


def drain_honours_pdb(report: dict) -> None:
    """Drain only the ranking pods (two replicas, PDB maxUnavailable 1): one is evicted, the second refused."""
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=ranking"
    before = ready_pods("ranking")
    start = time.monotonic()
    proc = subprocess.run(
        [KUBECTL, "drain", NODE, f"--pod-selector={selector}", "--ignore-daemonsets", "--delete-emptydir-data",
         "--timeout=45s"],
        capture_output=True, text=True, env={**os.environ, "KUBECONFIG": str(KUBECONFIG)}, timeout=120,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    during = ready_pods("ranking")
    run(KUBECTL, "uncordon", NODE)
    wait_until("two Ready ranking pods after uncordon", lambda: len(ready_pods("ranking")) >= 2, 600)
    refused = "disruption budget" in output
    report["drain"] = {
        "ranking_ready_before": len(before),
        "ranking_ready_while_draining": len(during),
        "drain_exit": proc.returncode,
        "refused_by_pdb": refused,
        "seconds_until_restored": round(time.monotonic() - start, 1),
    }
    log(f"   drain: {report['drain']}")
    if proc.returncode == 0 or not refused or len(during) != len(before) - 1:
        raise E2EFailure(f"drain did not stop at the PodDisruptionBudget: {report['drain']}\n{output[-1500:]}")


def hpa_scales_out(report: dict) -> None:
    """Bounded load (4 clients, at most 240 s) on the ranking Service; the HPA adds replicas."""
    hpa_name = f"{RELEASE}-ranking"

    def replicas() -> int:
        return int(kjson("get", "hpa", hpa_name)["status"].get("currentReplicas") or 0)

    wait_until("HPA metrics available", lambda: kjson("get", "hpa", hpa_name)["status"].get("currentMetrics"), 240, 5)
    before = replicas()
    port = free_port()
    start = time.monotonic()
    with relay([(port, f"{cluster_ip(f'{RELEASE}-ranking')}:50051")]), Searchers(f"127.0.0.1:{port}", 4) as load:
        try:
            wait_until("the ranking HPA to scale out", lambda: replicas() > before, 240, 5)
            scaled = True
        except E2EFailure:
            scaled = False
        seconds = round(time.monotonic() - start, 1)
    status = kjson("get", "hpa", hpa_name)["status"]
    report["hpa"] = {
        "replicas_before": before,
        "replicas_after": int(status.get("desiredReplicas") or 0),
        "seconds_to_scale": seconds,
        "searches": load.ok,
        "failed": load.failed,
        "metrics": status.get("currentMetrics"),
    }
    log(f"   hpa: {report['hpa']}")
    if not scaled:
        raise E2EFailure(f"the ranking HPA did not scale out under load: {report['hpa']}")


def _camera_jpeg() -> bytes:
    """A 1600-px JPEG (a photo upscaled, as a phone camera's), the query of the throughput runs."""
    import io

    from PIL import Image

    _, content = _photo(5)
    image = Image.open(io.BytesIO(content)).convert("RGB")
    image = image.resize((1600, round(1600 * image.height / image.width)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def embedding_scale_out(report: dict) -> None:
    """Search throughput (visual_only image searches, 6 clients, 40 s) with the embedding Deployment at 1 and
    then 2 pods. values-local.yaml caps an embedding pod's CPU, so one pod is the bottleneck; ranking balances
    its EmbedImage calls over the headless Service's pods (round_robin), finding a new pod when the server's
    maximum connection age sends it back to DNS."""
    from visearch.v1 import common_pb2, search_pb2

    request = search_pb2.SearchRequest(
        image=common_pb2.Image(content=_camera_jpeg()),
        top_k=10,
        tenant=TENANT,
        ranking=search_pb2.RankingProfile(name="visual_only"),
        understand_query=False,
    )
    deployment = f"deploy/{RELEASE}-embedding"
    port = free_port()
    rates = {}
    with relay([(port, f"{cluster_ip(f'{RELEASE}-ranking')}:50051")]):
        for replicas in (1, 2):
            kubectl("scale", deployment, f"--replicas={replicas}")
            wait_until(f"{replicas} Ready embedding pods", lambda r=replicas: len(ready_pods("embedding")) == r, 300)
            with Searchers(f"127.0.0.1:{port}", 6, request=request) as warm:
                time.sleep(45)  # connections age out (grpc.maxConnectionAgeSeconds) and re-resolve the pods
            with Searchers(f"127.0.0.1:{port}", 6, request=request) as load:
                start = time.monotonic()
                time.sleep(40)
            seconds = time.monotonic() - start
            rates[replicas] = {"searches_per_s": round(load.ok / seconds, 2), "failed": load.failed + warm.failed}
            log(f"   embedding x{replicas}: {rates[replicas]}")
    kubectl("scale", deployment, "--replicas=1")
    ratio = rates[2]["searches_per_s"] / max(rates[1]["searches_per_s"], 1e-9)
    report["embedding_scale_out"] = {"pods_1": rates[1], "pods_2": rates[2], "throughput_ratio": round(ratio, 2)}
    log(f"   embedding scale-out: {report['embedding_scale_out']}")
    if ratio < 1.2 or rates[1]["failed"] or rates[2]["failed"]:
        raise E2EFailure(f"a second embedding pod did not raise search throughput: {report['embedding_scale_out']}")


def prometheus_scrapes(report: dict) -> None:
    """Every visearch pod is an `up` target of the in-cluster Prometheus, and the alert rule groups are loaded."""
    port = free_port()
    with relay([(port, f"{cluster_ip('prometheus')}:9090")]):

        def get(path: str) -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                return json.loads(response.read())["data"]

        def all_up() -> dict | None:
            targets = get("/api/v1/targets?state=active")["activeTargets"]
            mine = [t for t in targets if t["labels"].get("release") == RELEASE]
            jobs = {t["labels"].get("job") for t in mine}
            return (
                {"targets": len(mine), "jobs": sorted(jobs)}
                if mine and all(t["health"] == "up" for t in mine)
                else None
            )

        scraped = wait_until("every visearch target up", all_up, 180, 5)
        groups = get("/api/v1/rules")["groups"]
        rules = sum(len(g["rules"]) for g in groups)
    pods = {
        p["metadata"]["labels"].get("app.kubernetes.io/component")
        for p in kjson("get", "pods", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
        if p["status"].get("phase") == "Running"
    }
    report["prometheus"] = {**scraped, "components": sorted(pods), "rule_groups": len(groups), "rules": rules}
    log(f"   prometheus: {report['prometheus']}")
    if not groups or rules == 0:
        raise E2EFailure("no alert rules loaded in Prometheus")
    missing = {c for c in pods if c and not any(c in job for job in scraped["jobs"])}
    if missing:
        raise E2EFailure(f"components not scraped: {sorted(missing)} (jobs: {scraped['jobs']})")


def uninstall() -> None:
    run(HELM, "uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "5m", check=False, timeout=400)
    run(HELM, "uninstall", DEPS, "-n", NS, "--wait", "--timeout", "5m", check=False, timeout=400)
    run(KUBECTL, "delete", "namespace", NS, "--wait=true", "--timeout=300s", check=False, timeout=400)
    run(KUBECTL, "delete", "pv", "-l", "app.kubernetes.io/managed-by=Helm", check=False)


STEPS = {
    "import-images": lambda report, args: run(
        "bash", str(ROOT / "deploy/k8s/cluster.sh"), "import", *IMAGES, timeout=1800
    ),
    "install": lambda report, args: install(report),
    "ingest-with-pod-loss": lambda report, args: ingest_with_pod_loss(report, args.images),
    "search-port-forward": lambda report, args: search_port_forward(report),
    "rolling-update": lambda report, args: rolling_upgrade(report),
    "drain-vs-pdb": lambda report, args: drain_honours_pdb(report),
    "hpa-scale-out": lambda report, args: hpa_scales_out(report),
    "embedding-scale-out": lambda report, args: embedding_scale_out(report),
    "prometheus": lambda report, args: prometheus_scrapes(report),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images", type=int, default=int(os.environ.get("K8S_E2E_IMAGES", "40")), help="photos to publish (default 40)"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        default=os.environ.get("K8S_E2E_KEEP") == "1",
        help="keep the releases and namespace",
    )
    parser.add_argument(
        "--steps",
        type=lambda v: v.split(","),
        default=list(STEPS),
        help=f"comma-separated steps to run, in their fixed order (default all: {','.join(STEPS)}); "
        "later steps expect the earlier ones' state (use with --keep)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps: {sorted(unknown)}")
    steps, report = Steps(), {"images": IMAGES, "ok": False}
    started = time.monotonic()
    try:
        with ExitStack() as cleanup:
            with steps.step("preflight"):
                preflight()
            if not args.keep:
                cleanup.callback(uninstall)
            for name, step in STEPS.items():
                if name in args.steps:
                    with steps.step(name):
                        step(report, args)
            report["restarts_at_end"] = restarts()
            report["ok"] = True
    except (E2EFailure, subprocess.TimeoutExpired) as exc:
        report["error"] = str(exc)
        log(f"FAILED: {exc}")
    finally:
        report["steps_s"] = steps.seconds
        report["total_s"] = round(time.monotonic() - started, 1)
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps(report, indent=2) + "\n")
        log(f"report: {REPORT.relative_to(ROOT)} (total {report['total_s']} s)")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
