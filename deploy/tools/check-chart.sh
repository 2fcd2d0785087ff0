#!/usr/bin/env bash
# Validate the Helm chart, its alerts and dashboard, offline. Exit non-zero on any failure.
#   1. helm lint --strict (default and production values)
#   2. helm template for default, production (CRD APIs declared, so ServiceMonitor, PrometheusRule and
#      ScaledObject render) and default + Milvus token (renders the Secret)
#   3. kubeconform -strict -summary on every render, against the offline schemas of install-tools.sh
#      (Kubernetes $K8S_VERSION OpenAPI + prometheus-operator and KEDA CRDs); a self-test first proves
#      the schemas reject an unknown field
#   4. promtool check rules helm/visearch/files/alerts.yaml
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

step "helm template"
"$BIN/helm" template visearch "$CHART" -n visearch --kube-version "$KUBE_VERSION" > "$OUT/default.yaml"
"$BIN/helm" template visearch "$CHART" -n visearch --kube-version "$KUBE_VERSION" "${CRD_APIS[@]}" \
  -f "$CHART/values-production.yaml" > "$OUT/production.yaml"
"$BIN/helm" template visearch "$CHART" -n visearch --kube-version "$KUBE_VERSION" \
  --set milvus.token=user:password --set triton.enabled=true > "$OUT/token-triton.yaml"
for f in default production token-triton; do
  echo "$f: $(grep -c '^kind:' "$OUT/$f.yaml") objects: $(grep '^kind:' "$OUT/$f.yaml" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}')"
done
# Values the schema must refuse.
if "$BIN/helm" template visearch "$CHART" --kube-version "$KUBE_VERSION" --set kafka.bootstrap="not a host" >/dev/null 2>&1; then
  echo "values.schema.json accepted an invalid kafka.bootstrap" >&2; exit 1
fi
echo "values.schema.json rejects an invalid kafka.bootstrap: ok"

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
"${KC[@]}" "$OUT/default.yaml" "$OUT/production.yaml" "$OUT/token-triton.yaml"

step "promtool check rules"
"$BIN/promtool" check rules "$CHART/files/alerts.yaml"

step "metric names used by alerts and dashboard exist"
"$PYTHON" "$ROOT/deploy/tools/check_metric_names.py" "$CHART/files/alerts.yaml" "$CHART/files/dashboard.json"

echo; echo "check-chart: all checks passed"
