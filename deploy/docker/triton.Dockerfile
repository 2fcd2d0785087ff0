# syntax=docker/dockerfile:1
# Triton Inference Server with visearch's production model repository baked in.
#
# TRITON_IMAGE has no default on purpose (no registry host is written in this repository): pass the
# official NVIDIA Triton 24.10 image reference from your registry or mirror, e.g.
#   docker build -f deploy/docker/triton.Dockerfile \
#     --build-arg TRITON_IMAGE=<registry>/nvidia/tritonserver:24.10-py3 -t visearch-triton:0.1.0 .
# The 24.10-py3 tag ships the onnxruntime backend the production flavour uses (KIND_GPU).
#
# Stage 1 builds and verifies the ONNX models exactly as the service image does, then writes the
# production-flavour repository (`visearch models build --triton /models --flavour production`):
# <model>/config.pbtxt (onnxruntime backend, dynamic batching, `recipe` parameter) + <model>/1/model.onnx.
# The services check that the served recipe equals theirs, so build both images from one commit.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG TRITON_IMAGE

FROM ${PYTHON_IMAGE} AS models
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VISEARCH_MODEL_CACHE_DIR=/opt/visearch/models
WORKDIR /src
COPY pyproject.toml README.md ./
COPY visearch ./visearch
COPY shared ./shared
COPY services ./services
RUN python -m venv /opt/build-venv \
 && /opt/build-venv/bin/pip install --upgrade pip \
 && /opt/build-venv/bin/pip install '.[build,data]'
RUN /opt/build-venv/bin/visearch models build --triton /models --flavour production

FROM ${TRITON_IMAGE}
ARG TRITON_IMAGE
RUN test -n "${TRITON_IMAGE}" || { echo "set --build-arg TRITON_IMAGE=<registry>/nvidia/tritonserver:24.10-py3" >&2; exit 1; }
LABEL org.opencontainers.image.title="visearch-triton" \
      org.opencontainers.image.description="Triton 24.10 serving the visearch production model repository"
COPY --from=models --chown=1000:1000 /models /models
# The official image has a non-root `triton-server` user (uid 1000).
USER 1000:1000
# 8000 HTTP, 8001 gRPC (VISEARCH_MODEL_TRITON_URL=<host>:8001), 8002 metrics (nv_inference_*).
EXPOSE 8000 8001 8002
ENTRYPOINT ["tritonserver"]
CMD ["--model-repository=/models", "--disable-auto-complete-config", "--exit-on-error=true", \
     "--model-control-mode=none", "--log-verbose=0"]
