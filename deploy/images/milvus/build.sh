#!/usr/bin/env bash
# localhost/visearch/milvus:2.3.5: Milvus 2.3.5 standalone (embedded etcd, rocksmq, local storage) for the
# local cluster's deps chart (deploy/k8s/deps/templates/milvus.yaml).
#
#   ROOT=<repo> bash deploy/images/milvus/build.sh [--help]     (or: deploy/images/build.sh milvus)
#
# The same server as deploy/milvus/milvus.sh runs locally: the `milvus` PyPI package (its venv in
# /opt/milvus/venv), whose server binary and libraries are extracted from the wheel at build time into
# /opt/milvus/bin (the wheel's lzma copies are then deleted). entrypoint.py (this folder) reuses
# deploy/milvus/launcher.py to write the config at each start and execs `milvus run standalone`.
# Listens on 0.0.0.0:19530 (gRPC, also REST) and 9091 (/healthz, /metrics); data in the volume
# /var/lib/milvus; runs as uid/gid 10001.
# Skipped when the image exists unless FORCE=1. Base image: deploy/images/lib.sh python_base.
set -euo pipefail
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}"
# shellcheck source=deploy/images/lib.sh
source "$ROOT/deploy/images/lib.sh"
MILVUS_VERSION=2.3.5
IMAGE="localhost/visearch/milvus:$MILVUS_VERSION"

case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) die "milvus/build.sh: unknown argument $1" ;;
esac

if [ "${FORCE:-0}" != 1 ] && podman image exists "$IMAGE"; then t "$IMAGE present (FORCE=1 rebuilds)"; exit 0; fi
python_base
start=$SECONDS ctx="$WORK/milvus"
rm -rf "$ctx"; mkdir -p "$ctx"
cp "$ROOT/deploy/milvus/launcher.py" "$ROOT/deploy/images/milvus/entrypoint.py" "$ctx/"
cat > "$ctx/Containerfile" <<CF
FROM $PYBASE
RUN python3 -m venv /opt/milvus/venv \\
 && /opt/milvus/venv/bin/pip install --no-cache-dir --disable-pip-version-check milvus==$MILVUS_VERSION \\
 && /opt/milvus/venv/bin/python -c "import milvus; milvus._initialize_data_files('/opt/milvus')" \\
 && rm -f /opt/milvus/bin/*.lzma.md5 /opt/milvus/venv/lib/python3*/site-packages/milvus/data/bin/*.lzma \\
 && ! LD_LIBRARY_PATH=/opt/milvus/bin ldd /opt/milvus/bin/milvus | grep 'not found'
RUN groupadd -g 10001 milvus && useradd -u 10001 -g 10001 -d /var/lib/milvus -M -s /usr/sbin/nologin milvus \\
 && mkdir -p /var/lib/milvus /run/milvus /tmp/milvus && chown 10001:10001 /var/lib/milvus /run/milvus /tmp/milvus
COPY launcher.py entrypoint.py /opt/milvus/
ENV MILVUS_HOME=/var/lib/milvus PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /var/lib/milvus
VOLUME /var/lib/milvus
EXPOSE 19530 9091
ENTRYPOINT ["/opt/milvus/venv/bin/python", "/opt/milvus/entrypoint.py"]
CF
mapfile -t mounts < <(host_build_mounts)
nice -n 10 podman build --network=host "${mounts[@]}" -t "$IMAGE" "$ctx"
t "$IMAGE built in $((SECONDS - start)) s ($(podman image inspect -f '{{.Size}}' "$IMAGE" | numfmt --to=iec))"
