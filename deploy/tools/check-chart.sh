#!/usr/bin/env bash
# Validate the Helm chart, its alerts and dashboard, offline. Exit non-zero on any failure.
#   1. helm lint --strict (default, production and helm/visearch/ci/security-values.yaml)
#   2. helm template for default, production (CRD APIs declared, so ServiceMonitor, PrometheusRule and
#      ScaledObject render), default + Milvus token (renders the Secret) and security (ci/security-values.yaml:
#      TLS + mutual TLS + tokens + rate limit + fetch CA bundle; no gRPC probe may remain under TLS); security
#      values that cannot work (TLS or auth without their Secret) must fail the render; in the default and
#      production renders each model service is a query Deployment (VISEARCH_SERVICE_ROLE=grpc) and a -worker
#      Deployment (role worker, the one KEDA scales), and ranking calls dns:/// targets of headless Services
#      Kafka client security (ci/kafka-security-values.yaml: SASL_SSL, SCRAM, CA + client certificate from
#      Secrets, KEDA with a TriggerAuthentication): env from secretKeyRef and TLS files in every Kafka client, none
#      in the query-only Deployments; Kafka security values that cannot work must fail the render
#      HTTP gateway: its peers (ranking, detection, ocr, classification over headless Services) admitted by their
#      NetworkPolicies, probes and /metrics on its metrics port (scraped), a PDB and an HPA like ranking's, its own
#      NetworkPolicy; gateway.enabled=false renders none of it
#   3. kubeconform -strict -summary on every render, against the offline schemas of install-tools.sh
#      (Kubernetes $K8S_VERSION OpenAPI + prometheus-operator and KEDA CRDs); a self-test first proves
#      the schemas reject an unknown field
#   4. promtool check rules helm/visearch/files/alerts.yaml, and its unit tests (promtool test rules files/alerts_test.yaml)
#   5. every metric in alerts.yaml and dashboard.json is exported by shared/metrics.py (or is nv_*/up, or one of
#      the kube-state-metrics / cAdvisor series check_metric_names.py lists); the lag exporter renders and is scraped
# Needs: bash deploy/tools/install-tools.sh (tools in var/tools/bin), .venv with PyYAML.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$ROOT/var/tools/bin"
SCHEMAS="$ROOT/var/tools/schemas"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CHART="$ROOT/helm/visearch"
KUBE_VERSION="${KUBE_VERSION:-1.31.1}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
for t in helm kubeconform promtool; do
  [ -x "$BIN/$t" ] || { echo "missing $BIN/$t: run bash deploy/tools/install-tools.sh" >&2; exit 1; }
done
[ -f "$SCHEMAS/deployment-apps-v1.json" ] || { echo "missing schemas: run bash deploy/tools/install-tools.sh" >&2; exit 1; }

step() { echo; echo "== $*"; }
CRD_APIS=(--api-versions monitoring.coreos.com/v1/ServiceMonitor --api-versions monitoring.coreos.com/v1/PrometheusRule
          --api-versions keda.sh/v1alpha1/ScaledObject)
KC=("$BIN/kubeconform" -strict -summary -schema-location "$SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json")

step "helm lint (default values)"
"$BIN/helm" lint --strict --kube-version "$KUBE_VERSION" "$CHART"
step "helm lint (values-production.yaml)"
"$BIN/helm" lint --strict --kube-version "$KUBE_VERSION" "$CHART" -f "$CHART/values-production.yaml"

step "helm lint (ci/security-values.yaml)"
"$BIN/helm" lint --strict --kube-version "$KUBE_VERSION" "$CHART" -f "$CHART/ci/security-values.yaml"

step "helm template"
"$BIN/helm" template visearch "$CHART" -n visearch --kube-version "$KUBE_VERSION" > "$OUT/default.yaml"
"$BIN/helm" template visearch "$CHART" -n visearch --kube-version "$KUBE_VERSION" "${CRD_APIS[@]}" \
  -f "$CHART/values-production.yaml" > "$OUT/production.yaml"
"$BIN/helm" template visearch "$CHART" -n visearch --kube-version "$KUBE_VERSION" \
  --set milvus.token=user:password --set triton.enabled=true > "$OUT/token-triton.yaml"
"$BIN/helm" template visearch "$CHART" -n visearch --kube-version "$KUBE_VERSION" \
  -f "$CHART/ci/security-values.yaml" > "$OUT/security.yaml"
for f in default production token-triton security; do
  echo "$f: $(grep -c '^kind:' "$OUT/$f.yaml") objects: $(grep '^kind:' "$OUT/$f.yaml" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}')"
done
# Values the schema must refuse.
if "$BIN/helm" template visearch "$CHART" --kube-version "$KUBE_VERSION" --set kafka.bootstrap="not a host" >/dev/null 2>&1; then
  echo "values.schema.json accepted an invalid kafka.bootstrap" >&2; exit 1
fi
echo "values.schema.json rejects an invalid kafka.bootstrap: ok"
# Security values the templates must refuse (fail fast instead of pods that cannot start or cannot talk).
for bad in "security.tls.enabled=true" "security.tls.mutual=true" "security.auth.enabled=true" \
           "security.auth.enabled=true,security.auth.existingSecret=t,security.auth.services=*"; do
  if "$BIN/helm" template visearch "$CHART" --kube-version "$KUBE_VERSION" --set "$bad" >/dev/null 2>&1; then
    echo "the chart rendered with --set $bad" >&2; exit 1
  fi
done
echo "TLS / auth without their Secrets (or a protected peer API without a client token) refused: ok"
# Under TLS every service mounts the Secret, and no probe is a (plaintext-only) Kubernetes gRPC probe.
"$PYTHON" - "$OUT/security.yaml" <<'PY'
import sys, yaml
deps = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Deployment"]
assert deps, "no Deployment rendered"
for d in deps:
    name, pod = d["metadata"]["name"], d["spec"]["template"]["spec"]
    if name.endswith(("-triton", "-lag-exporter")):  # no gRPC server or client (the lag exporter: Kafka and /metrics)
        continue
    c = pod["containers"][0]
    env = {e["name"] for e in c["env"]}
    for var in ("VISEARCH_SECURITY_TLS_CERT_FILE", "VISEARCH_SECURITY_TLS_CLIENT_CA_FILE", "VISEARCH_SECURITY_AUTH_TOKENS_FILE"):
        assert var in env, f"{name}: {var} not set"
    assert any(v["name"] == "tls" and v["secret"]["secretName"] for v in pod["volumes"]), f"{name}: no tls volume"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "grpc" not in c.get(probe, {}), f"{name}: {probe} is a gRPC probe under TLS"
    if name.endswith("-gateway"):  # HTTPS API port: the kubelet's probes go to the plain metrics port
        assert c["readinessProbe"]["httpGet"]["port"] == c["livenessProbe"]["httpGet"]["port"] == "metrics", name
    # Learned rankers: mounted (optional ConfigMap) into ranking only.
    rankers = [v for v in pod["volumes"] if v["name"] == "rankers"]
    assert bool(rankers) == name.endswith("-ranking"), f"{name}: rankers volume {rankers}"
    if rankers:
        assert rankers[0]["configMap"] == {"name": "visearch-rankers", "optional": True}
print(f"security: {len(deps)} Deployments with TLS files, token file and TLS-safe probes: ok")
PY

step "query serving apart from the ingest backlog; peers balanced over headless Services"
# Default and production renders: each model service in the chain is a query Deployment (role grpc) and a
# <name>-worker Deployment (role worker; the ScaledObject, when KEDA is on, scales the worker); ranking's peers are
# dns:/// targets of headless Services that select the query pods; round_robin and max connection age are set.
"$PYTHON" - "$OUT/default.yaml" "$OUT/production.yaml" <<'PY'
import sys, yaml
for path in sys.argv[1:]:
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    config = by[("ConfigMap", "visearch")]["data"]
    assert config["VISEARCH_GRPC_LB_POLICY"] == "round_robin" and float(config["VISEARCH_GRPC_MAX_CONNECTION_AGE_S"]) > 0
    def env(name):
        return {e["name"]: e.get("value") for e in by[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]["env"]}
    def component(kind, name):
        d = by[(kind, name)]
        return (d["spec"]["selector"].get("matchLabels") or d["spec"]["selector"])["app.kubernetes.io/component"]
    for svc, port in (("detection", 50054), ("embedding", 50052), ("ocr", 50055), ("classification", 50056)):
        assert env(f"visearch-{svc}").get("VISEARCH_SERVICE_ROLE") == "grpc", (path, svc)
        assert env(f"visearch-{svc}-worker").get("VISEARCH_SERVICE_ROLE") == "worker", (path, svc)
        assert component("Deployment", f"visearch-{svc}-worker") == f"{svc}-worker"
        headless = by[("Service", f"visearch-{svc}-headless")]
        assert headless["spec"]["clusterIP"] == "None" and component("Service", f"visearch-{svc}-headless") == svc
        assert component("Service", f"visearch-{svc}") == svc  # the ClusterIP Service: query pods only
        assert env("visearch-ranking")[f"VISEARCH_{svc.upper()}_ADDR"] == f"dns:///visearch-{svc}-headless:{port}"
        scaled = by.get(("ScaledObject", f"visearch-{svc}-worker"))
        if scaled:
            assert scaled["spec"]["scaleTargetRef"]["name"] == f"visearch-{svc}-worker"
            assert ("HorizontalPodAutoscaler", f"visearch-{svc}-worker") not in by
        assert ("ScaledObject", f"visearch-{svc}") not in by
    print(f"{path.rsplit('/', 1)[1]}: 4 query + 4 worker Deployments, headless peers, round_robin: ok")
PY

step "rollout hygiene: preStop, derived grace period, liveness off the work pool, topics before start"
# Every visearch Deployment: a preStop sleep, liveness on the metrics port's /livez (never the gRPC work pool), a
# grace period that covers preStop + worker drain + gRPC drain (the ConfigMap carries the same drain times), and,
# where the process uses Kafka (stage workers, indexer, ranking, the profile folder), the `visearch topics create`
# init container.
"$PYTHON" - "$OUT/default.yaml" "$OUT/production.yaml" <<'PY'
import sys, yaml
for path in sys.argv[1:]:
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "visearch")["data"]
    drain = float(config["VISEARCH_WORKER_DRAIN_S"]) + float(config["VISEARCH_GRPC_DRAIN_S"])
    deployments = [d for d in docs if d["kind"] == "Deployment" and "triton" not in d["metadata"]["name"]]
    kafka_pods = 0
    for d in deployments:
        name, pod = d["metadata"]["name"], d["spec"]["template"]["spec"]
        main = pod["containers"][0]
        stop = main["lifecycle"]["preStop"]
        sleep_s = stop["sleep"]["seconds"] if "sleep" in stop else int(stop["exec"]["command"][1])
        if name.endswith("-gateway"):  # HTTP server: liveness /healthz on its metrics port; no worker to drain
            assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, name
            grace = sleep_s + float(config["VISEARCH_GRPC_DRAIN_S"])
            assert pod["terminationGracePeriodSeconds"] >= grace, name
            continue
        assert main["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}, name
        assert pod["terminationGracePeriodSeconds"] >= sleep_s + drain or name.endswith("ranking"), name
        env = {e["name"] for e in main.get("env", [])}
        uses_kafka = main["args"][0] in ("indexer", "ranking", "profiles") or name.endswith("-worker")
        inits = [c["name"] for c in pod.get("initContainers", [])]
        assert ("topics" in inits) == uses_kafka, (name, inits)
        kafka_pods += uses_kafka
    print(f"{path.rsplit('/', 1)[1]}: {len(deployments)} Deployments, {kafka_pods} with the topics init container: ok")
PY

step "HTTP gateway: peers, probes, scrape, PDB, HPA, NetworkPolicies"
# The gateway calls ranking, detection, OCR and classification over their headless Services (visearch.peers), and
# their NetworkPolicies admit it (ranking's too when networkPolicy.rankingFrom narrows it); probes /healthz and
# /readyz and /metrics on its plain metrics port, which its Service names `metrics` (so the ServiceMonitor scrapes
# it); a PDB and an HPA like ranking's; its own NetworkPolicy opens the HTTP port and admits the monitoring
# namespace to the metrics port; gateway.enabled=false leaves no trace.
"$BIN/helm" template visearch "$CHART" -n visearch --kube-version "$KUBE_VERSION" \
  --set gateway.enabled=false > "$OUT/no-gateway.yaml"
"$PYTHON" - "$OUT/default.yaml" "$OUT/production.yaml" "$OUT/no-gateway.yaml" <<'PY'
import sys, yaml
GW = {"app.kubernetes.io/name": "visearch", "app.kubernetes.io/instance": "visearch", "app.kubernetes.io/component": "gateway"}
for path in sys.argv[1:3]:
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    dep = by[("Deployment", "visearch-gateway")]
    assert dep["spec"]["selector"]["matchLabels"] == GW and "replicas" not in dep["spec"]  # the HPA scales it
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["args"] == ["gateway"], c["args"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["VISEARCH_GATEWAY_PORT"] == str(ports["http"]) and env["VISEARCH_GATEWAY_METRICS_PORT"] == str(ports["metrics"])
    assert env["VISEARCH_GATEWAY_HOST"] == "0.0.0.0"
    for var, svc, port in (("VISEARCH_GATEWAY_SEARCH_ADDR", "ranking", 50051), ("VISEARCH_DETECTION_ADDR", "detection", 50054),
                           ("VISEARCH_OCR_ADDR", "ocr", 50055), ("VISEARCH_CLASSIFICATION_ADDR", "classification", 50056)):
        assert env[var] == f"dns:///visearch-{svc}-headless:{port}", (path, var, env.get(var))
        assert by[("Service", f"visearch-{svc}-headless")]["spec"]["selector"]["app.kubernetes.io/component"] == svc
    assert "VISEARCH_SECURITY_CLIENT_TOKEN" not in env  # it sends its caller's token on, never one of its own
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, c["readinessProbe"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, c["livenessProbe"]
    assert "preStop" in c["lifecycle"] and pod["automountServiceAccountToken"] is False
    svc = by[("Service", "visearch-gateway")]
    assert {p["name"]: p["targetPort"] for p in svc["spec"]["ports"]} == {"http": "http", "metrics": "metrics"}
    monitor = by.get(("ServiceMonitor", "visearch"))
    if monitor:  # production: the ServiceMonitor selects the gateway's Service and scrapes its `metrics` port
        assert all(svc["metadata"]["labels"][k] == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    pdb, hpa = by[("PodDisruptionBudget", "visearch-gateway")], by[("HorizontalPodAutoscaler", "visearch-gateway")]
    ranking_hpa = by[("HorizontalPodAutoscaler", "visearch-ranking")]
    assert pdb["spec"]["selector"]["matchLabels"] == GW and pdb["spec"]["maxUnavailable"] == 1
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "visearch-gateway"}
    assert hpa["spec"]["metrics"] == ranking_hpa["spec"]["metrics"] and hpa["spec"]["behavior"] == ranking_hpa["spec"]["behavior"]
    policy = by[("NetworkPolicy", "visearch-gateway")]["spec"]
    assert policy["podSelector"]["matchLabels"] == GW
    http_rule, metrics_rule = policy["ingress"]
    assert http_rule["ports"] == [{"port": "http", "protocol": "TCP"}] and "from" not in http_rule  # any source
    assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert list(metrics_rule["from"][0]) == ["namespaceSelector"]
    for callee in ("ranking", "detection", "ocr", "classification"):
        grpc_rule = by[("NetworkPolicy", f"visearch-{callee}")]["spec"]["ingress"][0]
        assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
        sources = grpc_rule["from"]
        assert {"podSelector": {"matchLabels": GW}} in sources or sources == [{"podSelector": {}}], (path, callee, sources)
    embedding_sources = by[("NetworkPolicy", "visearch-embedding")]["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": GW}} not in embedding_sources  # the gateway never calls embedding
    print(f"{path.rsplit('/', 1)[1]}: gateway -> ranking/detection/ocr/classification (headless, admitted), probes and "
          f"/metrics on its metrics port, PDB, HPA, NetworkPolicy: ok")
none = [d for d in yaml.safe_load_all(open(sys.argv[3])) if d]
assert not [d for d in none if d["metadata"]["name"] == "visearch-gateway"], "gateway.enabled=false still renders it"
assert "component: gateway" not in open(sys.argv[3]).read(), "gateway.enabled=false: a NetworkPolicy still admits it"
assert not [d for d in none if d["metadata"]["name"] == "visearch-ranking-headless"], "ranking-headless without its caller"
print("gateway.enabled=false: no gateway objects, no NetworkPolicy admits it, no ranking-headless Service: ok")
PY

step "Kafka client security (ci/kafka-security-values.yaml)"
# SASL_SSL + SCRAM-SHA-512, the brokers' CA and a client certificate (encrypted key) from Secrets, KEDA on: every
# pod that talks to Kafka (stage workers, indexer, ranking, the topics Job) gets the protocol, the user and password
# from secretKeyRef and the TLS files from a read-only Secret volume; the query-only Deployments get none; every
# ScaledObject's trigger says tls/sasl and references the TriggerAuthentication over the same Secrets' keys.
[ -f "$SCHEMAS/triggerauthentication-keda-v1alpha1.json" ] \
  || { echo "missing the TriggerAuthentication schema: run bash deploy/tools/install-tools.sh" >&2; exit 1; }
"$BIN/helm" lint --strict --kube-version "$KUBE_VERSION" "$CHART" -f "$CHART/ci/kafka-security-values.yaml"
"$BIN/helm" template visearch "$CHART" -n visearch --kube-version "$KUBE_VERSION" "${CRD_APIS[@]}" \
  --api-versions keda.sh/v1alpha1/TriggerAuthentication -f "$CHART/ci/kafka-security-values.yaml" \
  > "$OUT/kafka-security.yaml"
for bad in "kafka.security.protocol=SASL_SSL" "kafka.security.protocol=TLS" "kafka.security.sasl.existingSecret=s" \
           "kafka.security.tls.existingSecret=ca" "kafka.security.protocol=SSL,kafka.security.tls.existingSecret=ca,kafka.security.tls.certKey=tls.crt" \
           "kafka.security.protocol=SASL_SSL,kafka.security.sasl.existingSecret=s,kafka.security.sasl.mechanism=GSSAPI"; do
  if "$BIN/helm" template visearch "$CHART" --kube-version "$KUBE_VERSION" --set "$bad" >/dev/null 2>&1; then
    echo "the chart rendered with --set $bad" >&2; exit 1
  fi
done
echo "Kafka security values that cannot work (SASL without its Secret, a certificate without its key, Secrets of another protocol) refused: ok"
"$PYTHON" - "$OUT/kafka-security.yaml" "$OUT/default.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
pods = {(d["kind"], d["metadata"]["name"]): d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "Job")}
query_only = set()
for (kind, name), pod in pods.items():
    c = pod["containers"][0]
    env = {e["name"]: e for e in c.get("env", [])}
    kafka_env = {n for n in env if n.startswith(("VISEARCH_KAFKA_SASL", "VISEARCH_KAFKA_SSL", "VISEARCH_KAFKA_SECURITY"))}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    if env.get("VISEARCH_SERVICE_ROLE", {}).get("value") == "grpc" or name.endswith(("-triton", "-gateway")):
        assert not kafka_env and "kafka-tls" not in mounts, f"{name}: Kafka credentials in a pod that never uses Kafka"
        query_only.add(name)
        continue
    assert env["VISEARCH_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL", name
    assert env["VISEARCH_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512", name
    for var, secret, key in (("VISEARCH_KAFKA_SASL_USERNAME", "visearch-kafka-user", "username"),
                             ("VISEARCH_KAFKA_SASL_PASSWORD", "visearch-kafka-user", "password"),
                             ("VISEARCH_KAFKA_SSL_PASSWORD", "visearch-kafka-user", "user.password")):
        assert "value" not in env[var] and env[var]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}, (name, var)
    files = {v: env[v]["value"] for v in ("VISEARCH_KAFKA_SSL_CAFILE", "VISEARCH_KAFKA_SSL_CERTFILE", "VISEARCH_KAFKA_SSL_KEYFILE")}
    assert files == {"VISEARCH_KAFKA_SSL_CAFILE": "/etc/visearch/kafka-tls/ca.crt",
                     "VISEARCH_KAFKA_SSL_CERTFILE": "/etc/visearch/kafka-tls/client.crt",
                     "VISEARCH_KAFKA_SSL_KEYFILE": "/etc/visearch/kafka-tls/client.key"}, (name, files)
    assert mounts["kafka-tls"] == {"name": "kafka-tls", "mountPath": "/etc/visearch/kafka-tls", "readOnly": True}, name
    volume = next(v for v in pod["volumes"] if v["name"] == "kafka-tls")["projected"]
    sources = {s["secret"]["name"]: {i["path"] for i in s["secret"]["items"]} for s in volume["sources"]}
    assert sources == {"kafka-cluster-ca-cert": {"ca.crt"}, "visearch-kafka-user": {"client.crt", "client.key"}}, name
assert {n for k, n in pods if k == "Deployment"} - query_only >= {"visearch-indexer", "visearch-ranking", "visearch-embedding-worker"}
assert ("Job", "visearch-topics") in pods
auth = [d for d in docs if d["kind"] == "TriggerAuthentication"]
assert len(auth) == 1 and auth[0]["metadata"]["name"] == "visearch-kafka"
params = {r["parameter"]: (r["name"], r["key"]) for r in auth[0]["spec"]["secretTargetRef"]}
assert params == {"username": ("visearch-kafka-user", "username"), "password": ("visearch-kafka-user", "password"),
                  "ca": ("kafka-cluster-ca-cert", "ca.crt"), "cert": ("visearch-kafka-user", "user.crt"),
                  "key": ("visearch-kafka-user", "user.key"), "keyPassword": ("visearch-kafka-user", "user.password")}, params
scaled = [d for d in docs if d["kind"] == "ScaledObject"]
assert len(scaled) == 5, [d["metadata"]["name"] for d in scaled]
for d in scaled:
    (trigger,) = d["spec"]["triggers"]
    assert trigger["authenticationRef"] == {"name": "visearch-kafka"}, d["metadata"]["name"]
    assert trigger["metadata"]["tls"] == "enable" and trigger["metadata"]["sasl"] == "scram_sha512"
default = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]
assert not any(d["kind"] == "TriggerAuthentication" for d in default)
assert "VISEARCH_KAFKA_SECURITY_PROTOCOL" not in open(sys.argv[2]).read() and "kafka-tls" not in open(sys.argv[2]).read()
print(f"kafka security: {len(pods) - len(query_only)} Kafka clients with SASL_SSL from Secrets, {len(query_only)} query-only "
      f"pods without, {len(scaled)} ScaledObjects on one TriggerAuthentication; default render untouched: ok")
PY

step "kubeconform self-test (an unknown field must be rejected)"
cat > "$OUT/bad.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: c, image: i, notAField: true}]
YAML
if "${KC[@]}" "$OUT/bad.yaml" >/dev/null 2>&1; then echo "kubeconform accepted an invalid Deployment" >&2; exit 1; fi
echo "invalid Deployment rejected: ok"

step "kubeconform -strict -summary (Kubernetes $KUBE_VERSION + CRD schemas, offline)"
"${KC[@]}" "$OUT/default.yaml" "$OUT/production.yaml" "$OUT/token-triton.yaml" "$OUT/security.yaml" "$OUT/kafka-security.yaml"

step "lag exporter and scrape labels"
# The lag exporter (`visearch serve lag-exporter`): a Deployment with its Service's metrics port (so the ServiceMonitor
# scrapes it), no gRPC port, Kafka settings from the ConfigMap, /livez probes; the ServiceMonitor adds `release`
# (the alerts and the dashboard aggregate by namespace and release); metrics.lagExporter.enabled=false drops it.
"$BIN/helm" template visearch "$CHART" -n visearch --kube-version "$KUBE_VERSION" \
  --set metrics.lagExporter.enabled=false > "$OUT/no-exporter.yaml"
"$PYTHON" - "$OUT/production.yaml" "$OUT/no-exporter.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
pod = by[("Deployment", "visearch-lag-exporter")]["spec"]["template"]["spec"]
c = pod["containers"][0]
assert c["args"] == ["lag-exporter"] and [p["name"] for p in c["ports"]] == ["metrics"], c
assert c["envFrom"] == [{"configMapRef": {"name": "visearch"}}]
env = {e["name"]: e.get("value") for e in c["env"]}
assert env["VISEARCH_METRICS_PORT"] == str(c["ports"][0]["containerPort"])
assert c["livenessProbe"]["httpGet"] == c["readinessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
svc = by[("Service", "visearch-lag-exporter")]
monitor = by[("ServiceMonitor", "visearch")]["spec"]
assert all(svc["metadata"]["labels"][k] == v for k, v in monitor["selector"]["matchLabels"].items())
assert [p["name"] for p in svc["spec"]["ports"]] == ["metrics"]
(endpoint,) = monitor["endpoints"]
assert {"action": "replace", "targetLabel": "release", "replacement": "visearch"} in endpoint["relabelings"]
assert ("NetworkPolicy", "visearch-lag-exporter") in by
none = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(open(sys.argv[2])) if d}
assert not {k for k in none if "lag-exporter" in k[1]}, "metrics.lagExporter.enabled=false still renders it"
print("lag exporter Deployment, Service (scraped), NetworkPolicy; ServiceMonitor adds release: ok")
PY

step "promtool check rules"
"$BIN/promtool" check rules "$CHART/files/alerts.yaml"
"$BIN/promtool" test rules "$CHART/files/alerts_test.yaml"

step "metric names used by alerts and dashboard exist"
"$PYTHON" "$ROOT/deploy/tools/check_metric_names.py" "$CHART/files/alerts.yaml" "$CHART/files/dashboard.json"

echo; echo "check-chart: all checks passed"
