#!/usr/bin/env bash
# Local container images for the chart, built with podman from a Debian base made by debootstrap
# (no container registry involved).
#
#   deploy/images/build.sh [all|base|python|visearch|list] [--help]
#
#   base      localhost/visearch/debian:bookworm: `debootstrap --variant=minbase bookworm` against the
#             Debian mirror this machine's apt already uses (read from /etc/apt/sources.list*), imported
#             with `podman import`. Skipped when the image exists.
#   python    localhost/visearch/python:3.11-bookworm: the base + Debian's python3 (3.11), venv, pip and
#             python-is-python3: the stand-in for python:3.11-slim-bookworm in deploy/docker/Dockerfile.
#   visearch  localhost/visearch/visearch:$VERSION from deploy/docker/Dockerfile with MODELS=prebuilt:
#             the host's verified model cache ($VISEARCH_MODEL_CACHE_DIR, default
#             ~/.cache/visearch/models; recipe folders only) is staged in build/image-models/.
#   all       base, python, visearch (the default).
#   list      the images built here.
#
# Not yet here (see issue 17): Kafka, Milvus, Triton and Prometheus images, values-local.yaml.
# Builds run with --network=host (apt and pip inside RUN steps, no NAT rules needed).
# Environment: VERSION (0.1.0), SUITE (bookworm), DEBIAN_MIRROR (default: from apt's sources).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SUITE="${SUITE:-bookworm}"
VERSION="${VERSION:-0.1.0}"
MODELS_DIR="${VISEARCH_MODEL_CACHE_DIR:-$HOME/.cache/visearch/models}"
WORK="$ROOT/var/images"
BASE="localhost/visearch/debian:$SUITE"
PYBASE="localhost/visearch/python:3.11-$SUITE"
APP="localhost/visearch/visearch:$VERSION"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
t() { echo "[$(date +%T)] $*"; }
die() { echo "images/build.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "missing $1 (deploy/k8s/build.sh packages installs it)"; }

apt_mirror() {  # the first Debian archive URI apt uses here (deb822 or one-line format), not -security
  local m
  m=$( { grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
         grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
           | sed -E 's/^deb (\[[^]]*\] )?//' | awk '{print $1}'; } | grep -v -- '-security' | grep -E '/debian/?$' | head -1)
  [ -n "$m" ] || die "no Debian mirror found in /etc/apt/sources.list*; set DEBIAN_MIRROR"
  echo "$m"
}

base() {
  need podman; need debootstrap
  if podman image exists "$BASE"; then t "$BASE present"; return; fi
  local mirror="${DEBIAN_MIRROR:-$(apt_mirror)}" start=$SECONDS rootfs="$WORK/rootfs-$SUITE"
  t "debootstrap $SUITE from $mirror"
  rm -rf "$rootfs"; mkdir -p "$WORK"
  nice -n 10 debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" > "$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
  rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
  tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  rm -rf "$rootfs"
  t "$BASE built in $((SECONDS - start)) s"
}

python_base() {
  base
  if podman image exists "$PYBASE"; then t "$PYBASE present"; return; fi
  local start=$SECONDS
  mkdir -p "$WORK/python"
  cat > "$WORK/python/Containerfile" <<CF
FROM $BASE
ENV LANG=C.UTF-8
RUN apt-get update \\
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip python-is-python3 ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
CF
  nice -n 10 podman build --network=host -t "$PYBASE" "$WORK/python"
  t "$PYBASE built in $((SECONDS - start)) s"
}

# RUN steps see the host's package-index settings and trust store (pip.conf, the CA bundle: this machine's
# egress may re-sign TLS), bind-mounted read-only for the build only: nothing of them stays in a layer.
host_build_mounts() {
  local f
  for f in /etc/pip.conf /etc/ssl/certs/ca-certificates.crt; do
    [ -r "$f" ] && printf -- '--volume=%s:%s:ro\n' "$f" "$f"
  done
  return 0
}

visearch_image() {
  python_base
  [ -d "$MODELS_DIR" ] || die "no model cache at $MODELS_DIR (make models)"
  local start=$SECONDS stage="$ROOT/build/image-models" d
  rm -rf "$stage"; mkdir -p "$stage"
  for d in "$MODELS_DIR"/*/; do  # recipe folders only: sources and feature caches stay out of the image
    case "$(basename "$d")" in _*) continue ;; esac
    cp -a "$d" "$stage/"
  done
  local mounts; mapfile -t mounts < <(host_build_mounts)
  nice -n 10 podman build --network=host "${mounts[@]}" -f "$ROOT/deploy/docker/Dockerfile" \
    --build-arg PYTHON_IMAGE="$PYBASE" --build-arg MODELS=prebuilt --build-arg VERSION="$VERSION" \
    -t "$APP" "$ROOT"
  t "$APP built in $((SECONDS - start)) s"
}

cmd="${1:-all}"
case "$cmd" in
  -h|--help|help) usage ;;
  base) base ;;
  python) python_base ;;
  visearch) visearch_image ;;
  all) visearch_image ;;
  list) podman images --filter reference='localhost/visearch/*' ;;
  *) usage >&2; exit 2 ;;
esac
