#!/usr/bin/env bash
# Validate the Helm chart, its alerts and dashboard, offline. Exit non-zero on any failure.
#   1. helm lint --strict (default, production and helm/visearch/ci/security-values.yaml)
#   2. helm template for default, production (CRD APIs declared, so ServiceMonitor, PrometheusRule and
#      ScaledObject render), default + Milvus token (renders the Secret) and security (ci/security-values.yaml:
#      TLS + mutual TLS + tokens + rate limit + fetch CA bundle; no gRPC probe may remain under TLS); security
#      values that cannot work (TLS or auth without their Secret) must fail the render
#   3. kubeconform -strict -summary on every render, against the offline schemas of install-tools.sh
#      (Kubernetes $K8S_VERSION OpenAPI + prometheus-operator and KEDA CRDs); a self-test first proves
#      the schemas reject an unknown field
#   4. promtool check rules helm/visearch/files/alerts.yaml, and its unit tests (promtool test rules files/alerts_test.yaml)
#   5. every metric in alerts.yaml and dashboard.json is exported by shared/metrics.py (or is nv_*/up)
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
    if name.endswith("-triton"):
        continue
    c = pod["containers"][0]
    env = {e["name"] for e in c["env"]}
    for var in ("VISEARCH_SECURITY_TLS_CERT_FILE", "VISEARCH_SECURITY_TLS_CLIENT_CA_FILE", "VISEARCH_SECURITY_AUTH_TOKENS_FILE"):
        assert var in env, f"{name}: {var} not set"
    assert any(v["name"] == "tls" and v["secret"]["secretName"] for v in pod["volumes"]), f"{name}: no tls volume"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "grpc" not in c[probe], f"{name}: {probe} is a gRPC probe under TLS"
    # Learned rankers: mounted (optional ConfigMap) into ranking only.
    rankers = [v for v in pod["volumes"] if v["name"] == "rankers"]
    assert bool(rankers) == name.endswith("-ranking"), f"{name}: rankers volume {rankers}"
    if rankers:
        assert rankers[0]["configMap"] == {"name": "visearch-rankers", "optional": True}
print(f"security: {len(deps)} Deployments with TLS files, token file and TLS-safe probes: ok")
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
"${KC[@]}" "$OUT/default.yaml" "$OUT/production.yaml" "$OUT/token-triton.yaml" "$OUT/security.yaml"

step "promtool check rules"
"$BIN/promtool" check rules "$CHART/files/alerts.yaml"
"$BIN/promtool" test rules "$CHART/files/alerts_test.yaml"

step "metric names used by alerts and dashboard exist"
"$PYTHON" "$ROOT/deploy/tools/check_metric_names.py" "$CHART/files/alerts.yaml" "$CHART/files/dashboard.json"

echo; echo "check-chart: all checks passed"
