#!/bin/sh
# ENTRYPOINT of localhost/visearch/triton: the CPU tritonserver 2.51 of the nvidia-pytriton wheel, with the
# flags deploy/triton/triton.sh also passes (the wheel's backends/caches folders, no GPU metrics, no pinned
# memory pool: there is no CUDA in this build), then the container's arguments ("$@", e.g. the chart's
# --model-repository=/models ...). Addresses stay Triton's defaults (all interfaces): 8000 HTTP, 8001 gRPC,
# 8002 metrics. PATH (image ENV) starts with the venv's bin/, so the python-backend stubs run the venv's
# Python (numpy<2, onnxruntime); see deploy/triton/README.md.
set -eu
dist=/opt/triton/tritonserver
exec "$dist/bin/tritonserver" --backend-directory="$dist/backends" --cache-directory="$dist/caches" \
  --allow-metrics=true --allow-cpu-metrics=true --allow-gpu-metrics=false --pinned-memory-pool-byte-size=0 \
  --strict-readiness=true "$@"
