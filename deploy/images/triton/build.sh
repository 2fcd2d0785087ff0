#!/usr/bin/env bash
# localhost/visearch/triton:$VERSION (0.1.0): the CPU Triton Inference Server the local stack runs
# (deploy/triton/triton.sh), with the LOCAL model repository baked in at /models, for the visearch chart's
# triton Deployment (helm/visearch/templates/triton.yaml; values: triton.gpu=0, image pullPolicy Never).
#
#   ROOT=<repo> bash deploy/images/triton/build.sh [--help]     (or: deploy/images/build.sh triton)
#
# - /opt/triton/venv: nvidia-pytriton 0.7.0 (tritonserver 2.51.0, python backend only), numpy<2 and
#   onnxruntime at the version triton.sh pins (read from it); the python-backend stub for the image's
#   Python 3.11 is put next to libtriton_python.so as triton.sh does; Debian's libpython3.11 for the stub.
# - /models: `visearch models build --triton DIR --flavour local` run HERE with the project's .venv from the
#   host's verified model cache ($VISEARCH_MODEL_CACHE_DIR, default ~/.cache/visearch/models; nothing is
#   downloaded), then copied in: python-backend models whose model.py runs model.onnx with onnxruntime.
#   Rebuild this image after the models change (the services check the served recipe).
# - ENTRYPOINT tritonserver.sh (this folder): execs tritonserver with the wheel's backend folder, no GPU
#   metrics, no pinned memory, then "$@". Default CMD: --model-repository=/models ... as the chart passes.
# - runs as uid/gid 1000; writes nothing outside /tmp and /dev/shm (works with a read-only root).
# Skipped when the image exists unless FORCE=1.
set -euo pipefail
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}"
# shellcheck source=deploy/images/lib.sh
source "$ROOT/deploy/images/lib.sh"
IMAGE="localhost/visearch/triton:$VERSION"
PYTRITON_VERSION="$(sed -n 's/^PYTRITON_VERSION="\([^"]*\)".*/\1/p' "$ROOT/deploy/triton/triton.sh")"
ONNXRUNTIME_VERSION="$(sed -n 's/^ONNXRUNTIME_VERSION="\([^"]*\)".*/\1/p' "$ROOT/deploy/triton/triton.sh")"
NUMPY_SPEC="$(sed -n 's/^NUMPY_SPEC="\([^"]*\)".*/\1/p' "$ROOT/deploy/triton/triton.sh")"

case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) die "triton/build.sh: unknown argument $1" ;;
esac
[ -n "$PYTRITON_VERSION" ] && [ -n "$ONNXRUNTIME_VERSION" ] && [ -n "$NUMPY_SPEC" ] \
  || die "cannot read the pinned versions from deploy/triton/triton.sh"

if [ "${FORCE:-0}" != 1 ] && podman image exists "$IMAGE"; then t "$IMAGE present (FORCE=1 rebuilds)"; exit 0; fi
[ -x "$ROOT/.venv/bin/visearch" ] || die "no $ROOT/.venv/bin/visearch (make install)"
python_base
start=$SECONDS ctx="$WORK/triton"
rm -rf "$ctx"; mkdir -p "$ctx"
t "model repository (local flavour) -> $ctx/models"
"$ROOT/.venv/bin/visearch" models build --triton "$ctx/models" --flavour local
chmod -R a+rX "$ctx/models"
cp "$ROOT/deploy/images/triton/tritonserver.sh" "$ctx/"
cat > "$ctx/Containerfile" <<CF
FROM $PYBASE
RUN apt-get update \\
 && apt-get install -y --no-install-recommends libpython3.11 libstdc++6 \\
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/triton/venv \\
 && /opt/triton/venv/bin/pip install --no-cache-dir --disable-pip-version-check \\
      "nvidia-pytriton==$PYTRITON_VERSION" "$NUMPY_SPEC" "onnxruntime==$ONNXRUNTIME_VERSION" \\
 && dist=\$(/opt/triton/venv/bin/python -c 'import pytriton, os; print(os.path.dirname(pytriton.__file__))')/tritonserver \\
 && cp "\$dist/python_backend_stubs/3.11/triton_python_backend_stub" "\$dist/backends/python/" \\
 && rm -rf "\$dist/python_backend_stubs" \\
 && ln -s "\$dist" /opt/triton/tritonserver \\
 && ! ldd "\$dist/bin/tritonserver" "\$dist/backends/python/triton_python_backend_stub" | grep 'not found'
RUN groupadd -g 1000 triton && useradd -u 1000 -g 1000 -d /tmp -M -s /usr/sbin/nologin triton
COPY tritonserver.sh /usr/local/bin/tritonserver
COPY models /models
ENV PATH=/opt/triton/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    HOME=/tmp PYTHONDONTWRITEBYTECODE=1
USER 1000:1000
EXPOSE 8000 8001 8002
ENTRYPOINT ["/usr/local/bin/tritonserver"]
CMD ["--model-repository=/models", "--disable-auto-complete-config", "--exit-on-error=true", "--model-control-mode=none"]
CF
mapfile -t mounts < <(host_build_mounts)
nice -n 10 podman build --network=host "${mounts[@]}" -t "$IMAGE" "$ctx"
t "$IMAGE built in $((SECONDS - start)) s ($(podman image inspect -f '{{.Size}}' "$IMAGE" | numfmt --to=iec))"
