#!/usr/bin/env bash
# Build and cache what the local one-node Kubernetes cluster needs (deploy/k8s/cluster.sh).
#
#   deploy/k8s/build.sh [all|packages|binaries|apiserver|pause|status] [--help]
#
#   packages  Debian packages: etcd, containerd, runc, CNI plugins, podman, buildah, debootstrap,
#             iproute2, iptables, openssl, conntrack (apt-get; skipped when all are installed),
#             and the podman engine settings this machine kind needs (runc, cgroupfs, ulimits).
#   binaries  kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and
#             kubectl built from the Go module k8s.io/kubernetes@v$K8S_VERSION through a small local
#             Go module (its ./staging replaces re-pointed at the published k8s.io/* v0.x modules),
#             CoreDNS from github.com/coredns/coredns, and helm (var/tools/bin/helm is reused when
#             present), metrics-server from sigs.k8s.io/metrics-server (the HPA's resource metrics),
#             and the pod sandbox ("pause") program: a few lines of static C.
#             Each binary is skipped when the cache already holds it at the wanted version.
#   apiserver kube-apiserver and helm only: what the chart's server-side install test needs
#             (tests/integration/test_chart_apiserver.py, with Debian's etcd-server); ~12 min cold.
#   all       packages then binaries (the default).
#   status    what the cache holds.
#
# Cache: $VISEARCH_K8S_CACHE (default ~/.cache/visearch/k8s): bin/, kbuild/ (the local Go module),
# versions (one "name version" line per cached binary). Cold build on 2 cores: ~20-30 min for
# Kubernetes, ~9 min for CoreDNS, ~6 min for metrics-server; warm: seconds.
# Environment: K8S_VERSION (1.34.4), COREDNS_VERSION (v1.14.7), HELM_VERSION (v3.16.2),
#              METRICS_SERVER_VERSION (v0.8.0),
#              GO_BUILD_P (parallel go packages, 2), NICE (10).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${VISEARCH_K8S_CACHE:-$HOME/.cache/visearch/k8s}"
BIN="$CACHE/bin"
K8S_VERSION="${K8S_VERSION:-1.34.4}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
METRICS_SERVER_VERSION="${METRICS_SERVER_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.16.2}"
GO_BUILD_P="${GO_BUILD_P:-2}"
NICE="${NICE:-10}"
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
DEB_PACKAGES=(etcd-server etcd-client containerd runc containernetworking-plugins podman buildah
              debootstrap iproute2 iptables openssl conntrack curl)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
log() { echo "[$(date +%T)] $*"; }
die() { echo "build.sh: $*" >&2; exit 1; }

cached_version() { [ -x "$BIN/$1" ] && awk -v n="$1" '$1 == n {print $2}' "$CACHE/versions" 2>/dev/null || true; }
record_version() {  # record_version NAME VERSION
  touch "$CACHE/versions"
  { grep -v "^$1 " "$CACHE/versions" || true; echo "$1 $2"; } > "$CACHE/versions.tmp"
  mv "$CACHE/versions.tmp" "$CACHE/versions"
}

packages() {
  local missing=() p
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then log "Debian packages present"
  else
    [ "$(id -u)" = 0 ] || die "installing ${missing[*]} needs root"
    log "apt-get install ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  fi
  # podman on this machine kind: crun refuses the hybrid cgroup layout and the default nofile
  # rlimit exceeds the hard limit (no CAP_SYS_RESOURCE). Written once; an existing file is kept.
  local conf=/etc/containers/containers.conf
  if ! grep -qs 'visearch' "$conf"; then
    if [ -s "$conf" ]; then log "keeping existing $conf (check: runtime=runc, cgroup_manager=cgroupfs)"
    else
      mkdir -p /etc/containers
      cat > "$conf" <<'CONF'
# written by visearch deploy/k8s/build.sh
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
      log "wrote $conf"
    fi
  fi
}

build_kubernetes() {
  local todo=() c
  for c in "${K8S_CMDS[@]}"; do [ "$(cached_version "$c")" = "v$K8S_VERSION" ] || todo+=("$c"); done
  if [ ${#todo[@]} -eq 0 ]; then log "kubernetes v$K8S_VERSION cached"; return; fi
  command -v go >/dev/null || die "go is required (Go toolchain)"
  local start=$SECONDS kb="$CACHE/kbuild"
  mkdir -p "$kb"
  log "building ${todo[*]} v$K8S_VERSION (go $(go env GOVERSION), -p $GO_BUILD_P)"
  (
    cd "$kb"
    go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" > /dev/null
    local mod
    mod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/v$K8S_VERSION.mod"
    {
      printf 'module local/kbuild\n\ngo 1.24.0\n\ngodebug default=go1.24\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VERSION"
      grep -E '=> \./staging' "$mod" | awk '{print $1}' | while read -r m; do
        printf '\t%s => %s v0.%s\n' "$m" "$m" "${K8S_VERSION#1.}"
      done
      printf ')\n'
    } > go.mod
    rm -f go.sum
    go get $(for c in "${todo[@]}"; do echo "k8s.io/kubernetes/cmd/$c@v$K8S_VERSION"; done)
    local p=k8s.io/component-base/version major minor
    major=${K8S_VERSION%%.*}; minor=$(echo "$K8S_VERSION" | cut -d. -f2)
    local ld="-s -w -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ld="$ld -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    mkdir -p "$BIN/.new"
    CGO_ENABLED=0 nice -n "$NICE" go build -p "$GO_BUILD_P" -trimpath -ldflags "$ld" -o "$BIN/.new/" \
      $(for c in "${todo[@]}"; do echo "k8s.io/kubernetes/cmd/$c"; done)
  )
  for c in "${todo[@]}"; do mv -f "$BIN/.new/$c" "$BIN/$c"; record_version "$c" "v$K8S_VERSION"; done
  rmdir "$BIN/.new" 2>/dev/null || true
  log "built kubernetes v$K8S_VERSION in $((SECONDS - start)) s"
}

build_coredns() {
  if [ "$(cached_version coredns)" = "$COREDNS_VERSION" ]; then log "coredns $COREDNS_VERSION cached"; return; fi
  command -v go >/dev/null || die "go is required (Go toolchain)"
  local start=$SECONDS
  log "building coredns $COREDNS_VERSION"
  GOBIN="$BIN" CGO_ENABLED=0 nice -n "$NICE" go install -p "$GO_BUILD_P" -ldflags "-s -w" \
    "github.com/coredns/coredns@$COREDNS_VERSION"
  record_version coredns "$COREDNS_VERSION"
  log "built coredns in $((SECONDS - start)) s"
}

build_metrics_server() {
  if [ "$(cached_version metrics-server)" = "$METRICS_SERVER_VERSION" ]; then
    log "metrics-server $METRICS_SERVER_VERSION cached"; return
  fi
  command -v go >/dev/null || die "go is required (Go toolchain)"
  local start=$SECONDS
  log "building metrics-server $METRICS_SERVER_VERSION"
  GOBIN="$BIN" CGO_ENABLED=0 nice -n "$NICE" go install -p "$GO_BUILD_P" -ldflags "-s -w" \
    "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
  record_version metrics-server "$METRICS_SERVER_VERSION"
  log "built metrics-server in $((SECONDS - start)) s"
}

get_helm() {
  if [ -x "$BIN/helm" ] && [ -n "$(cached_version helm)" ]; then log "helm $(cached_version helm) cached"; return; fi
  if [ -x "$ROOT/var/tools/bin/helm" ]; then
    cp -f "$ROOT/var/tools/bin/helm" "$BIN/helm"
    record_version helm "$("$BIN/helm" version --short 2>/dev/null | cut -d+ -f1)"
    log "helm copied from var/tools/bin"
    return
  fi
  local start=$SECONDS
  GOBIN="$BIN" CGO_ENABLED=0 nice -n "$NICE" go install -p "$GO_BUILD_P" \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  record_version helm "$HELM_VERSION"
  log "built helm in $((SECONDS - start)) s"
}

PAUSE_VERSION=1
build_pause() {  # the pod sandbox process: waits for a signal and reaps orphans
  if [ "$(cached_version pause)" = "$PAUSE_VERSION" ]; then log "pause cached"; return; fi
  command -v gcc >/dev/null || die "gcc is required for the pause program (apt-get install gcc libc6-dev)"
  mkdir -p "$CACHE/pause"
  cat > "$CACHE/pause/pause.c" <<'C'
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction q = {0}, r = {0};
  q.sa_handler = quit; sigaction(SIGINT, &q, 0); sigaction(SIGTERM, &q, 0);
  r.sa_handler = reap; r.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &r, 0);
  for (;;) pause();
}
C
  gcc -Os -static -o "$BIN/pause" "$CACHE/pause/pause.c"
  strip "$BIN/pause"
  record_version pause "$PAUSE_VERSION"
  log "built pause"
}

binaries() {
  mkdir -p "$BIN"
  export GOFLAGS="${GOFLAGS:--buildvcs=false}"
  build_pause
  get_helm
  build_kubernetes
  build_coredns
  build_metrics_server
  "$BIN/kube-apiserver" --version
}

status() {
  echo "cache: $CACHE"
  local n
  for n in "${K8S_CMDS[@]}" coredns metrics-server helm pause; do
    printf '  %-24s %s\n' "$n" "$(v=$(cached_version "$n"); echo "${v:-missing}")"
  done
}

cmd="${1:-all}"
case "$cmd" in
  -h|--help|help) usage ;;
  all) packages; binaries ;;
  packages) packages ;;
  binaries) binaries ;;
  pause) mkdir -p "$BIN"; build_pause ;;
  apiserver) mkdir -p "$BIN"; export GOFLAGS="${GOFLAGS:--buildvcs=false}"; K8S_CMDS=(kube-apiserver); get_helm; build_kubernetes ;;
  status) status ;;
  *) usage >&2; exit 2 ;;
esac
