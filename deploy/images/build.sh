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
#   kafka | milvus | triton | prometheus
#             the chart's dependencies, each built by deploy/images/<name>/build.sh (see its header):
#             localhost/visearch/<name>:<its version>.
#   all       base, python, visearch and the four dependency images (the default).
#   list      the images built here.
#
# helm/visearch/values-local.yaml points the chart at these images (imagePullPolicy: Never).
# Builds run with --network=host (apt and pip inside RUN steps, no NAT rules needed).
# Environment: VERSION (0.1.0), SUITE (bookworm), DEBIAN_MIRROR (default: from apt's sources).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MODELS_DIR="${VISEARCH_MODEL_CACHE_DIR:-$HOME/.cache/visearch/models}"
# shellcheck source=deploy/images/lib.sh
source "$ROOT/deploy/images/lib.sh"
APP="localhost/visearch/visearch:$VERSION"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

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
  kafka|milvus|triton|prometheus) ROOT="$ROOT" bash "$ROOT/deploy/images/$cmd/build.sh" ;;
  all)
    visearch_image
    for dep in kafka milvus triton prometheus; do ROOT="$ROOT" bash "$ROOT/deploy/images/$dep/build.sh"; done ;;
  list) podman images --filter reference='localhost/visearch/*' ;;
  *) usage >&2; exit 2 ;;
esac
