#!/usr/bin/env bash
# localhost/visearch/prometheus:3.4.2: Prometheus 3.4.2 and promtool for the local cluster's deps chart
# (deploy/k8s/deps), FROM the Debian base of deploy/images/lib.sh (no container registry here).
#
#   ROOT=<repo> bash deploy/images/prometheus/build.sh [--help]     (or: deploy/images/build.sh prometheus)
#
# Why not Debian's `prometheus` package: bookworm ships 2.42.0+ds built without the Kubernetes service discovery
# (its config parser rejects kubernetes_sd_configs), which the chart's scrape config needs. So the binaries are
# built here from the Go module github.com/prometheus/prometheus $PROM_MODULE (= Prometheus 3.4.2): cmd/prometheus
# and cmd/promtool are copied into a small local module (var/images/prometheus-gobuild) with the service
# discovery plugins cut down to kubernetes + file (all of them would pull every cloud SDK in); built once, kept
# in its bin/. No web UI assets (the API is what is used). User prometheus, uid/gid 10002.
# Entrypoint: prometheus --config.file=/etc/prometheus/prometheus.yml --storage.tsdb.path=/prometheus
# --web.enable-lifecycle (more flags may follow as args). Skipped when the image exists, unless FORCE=1.
set -euo pipefail
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}"
# shellcheck source=deploy/images/lib.sh
source "$ROOT/deploy/images/lib.sh"
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;; esac
PROM_MODULE="${PROM_MODULE:-v0.304.2}" PROM_VERSION=3.4.2
IMG="localhost/visearch/prometheus:$PROM_VERSION" CTX="$WORK/prometheus" GB="$WORK/prometheus-gobuild"
if [ "${FORCE:-0}" != 1 ] && podman image exists "$IMG"; then t "$IMG present"; exit 0; fi
base
start=$SECONDS
if [ "$(cat "$GB/bin/.version" 2>/dev/null)" != "$PROM_MODULE" ]; then
  need go; t "building prometheus + promtool $PROM_VERSION from source (a few minutes)"
  rm -rf "$GB"; mkdir -p "$GB/prometheus" "$GB/promtool" "$GB/bin"
  ( cd "$GB"
    src=$(go mod download -json "github.com/prometheus/prometheus@$PROM_MODULE" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    mod=$(go mod download -json "github.com/prometheus/prometheus@$PROM_MODULE" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
    [ -d "$src" ] && [ -f "$mod" ] || die "github.com/prometheus/prometheus@$PROM_MODULE not downloaded"
    for c in prometheus promtool; do
      for f in "$src/cmd/$c"/*.go; do
        case "$f" in *_test.go) continue ;; esac
        sed 's#_ "github.com/prometheus/prometheus/plugins".*#_ "github.com/prometheus/prometheus/discovery/file"\n\t_ "github.com/prometheus/prometheus/discovery/kubernetes"#' \
          "$f" > "$c/${f##*/}"
      done
    done
    # its exclude/replace directives apply only in the main module: carried over
    { printf 'module local/prombuild\n\ngo 1.23.0\n\nrequire github.com/prometheus/prometheus %s\n\n' "$PROM_MODULE"
      sed -n '/^exclude/,$p' "$mod"; } > go.mod
    go mod tidy > tidy.log 2>&1 || { tail -20 tidy.log >&2; die "go mod tidy failed ($GB/tidy.log)"; }
    v=github.com/prometheus/common/version
    CGO_ENABLED=0 nice -n 10 go build -p "$(nproc)" -trimpath -tags netgo \
      -ldflags "-s -w -X $v.Version=$PROM_VERSION -X $v.Branch=v$PROM_VERSION -X $v.BuildUser=visearch" \
      -o bin/ ./prometheus ./promtool )
  echo "$PROM_MODULE" > "$GB/bin/.version"
  t "binaries built in $((SECONDS - start)) s"
fi
cp "$GB/bin/prometheus" "$GB/bin/promtool" "$CTX/"
cat > "$CTX/prometheus.yml" <<'YML'
# Default of localhost/visearch/prometheus: scrape itself. The deps chart mounts its own file over this one.
global: {scrape_interval: 15s}
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:9090"]}]
YML
cat > "$CTX/Containerfile" <<CF
FROM $BASE
RUN groupadd -g 10002 prometheus && useradd -u 10002 -g 10002 -d /prometheus -s /usr/sbin/nologin prometheus \\
 && mkdir -p /prometheus /etc/prometheus && chown 10002:10002 /prometheus
COPY prometheus promtool /usr/bin/
COPY prometheus.yml /etc/prometheus/prometheus.yml
LABEL org.opencontainers.image.title="visearch local prometheus" org.opencontainers.image.version="$PROM_VERSION"
USER 10002
WORKDIR /prometheus
VOLUME /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus", "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.enable-lifecycle"]
CF
nice -n 10 podman build --network=host -t "$IMG" -f "$CTX/Containerfile" "$CTX"
t "$IMG built in $((SECONDS - start)) s ($(podman image inspect -f '{{.Size}}' "$IMG" | numfmt --to=iec))"
