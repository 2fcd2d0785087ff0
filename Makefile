# visearch: every entry point a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= build,data,dev,eval
# Built models live outside the repo, keyed by recipe (see shared/models/registry.py).
export VISEARCH_MODEL_CACHE_DIR ?= $(HOME)/.cache/visearch/models
PROTOS := $(wildcard protos/visearch/v1/*.proto)
PYTEST_ARGS ?=
EVAL_ARGS ?=

.PHONY: help setup system-packages models proto proto-check lint lint-imports typecheck demo test test-unit eval bench bench-milvus chaos load chart-check clean \
        kafka-up kafka-down milvus-up milvus-down triton-up triton-down up down status \
        k8s-build k8s-up k8s-down k8s-status k8s-e2e images

# The local stack (make up): real Kafka and Milvus standalone on 127.0.0.1, services under supervisord.
VAR := $(CURDIR)/var
STACK_ENV := VISEARCH_ROOT=$(CURDIR) VISEARCH_VAR=$(VAR) VISEARCH_KAFKA_BOOTSTRAP=127.0.0.1:9092 \
	VISEARCH_MILVUS_URI=http://127.0.0.1:19530 VISEARCH_MODEL_TRITON_URL=127.0.0.1:8001
TRITON_REPOSITORY := $(VAR)/triton/models

help:  ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

system-packages:  ## install the Debian data packages (Fashion-MNIST, darknet photos, WordNet, fonts, Scratch and Ren'Py art)
	bash deploy/local/install-system-packages.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	touch $@

setup: system-packages $(VENV)/.installed  ## create .venv and install visearch with all extras

models: setup  ## export and verify the ONNX models into $VISEARCH_MODEL_CACHE_DIR
	$(BIN)/visearch models build

# Messages typed by protoc's .pyi, service stubs and servicers by mypy-protobuf's _grpc.pyi (make typecheck reads both).
PROTOC := $(BIN)/python -m grpc_tools.protoc -Iprotos --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc

proto: $(VENV)/.installed  ## regenerate visearch/v1 from protos/
	$(PROTOC) --python_out=. --pyi_out=. --grpc_python_out=. --mypy_grpc_out=quiet:. $(PROTOS)

proto-check: $(VENV)/.installed  ## fail if the generated code in visearch/v1 is stale
	@tmp=$$(mktemp -d); \
	$(PROTOC) --python_out=$$tmp --pyi_out=$$tmp --grpc_python_out=$$tmp --mypy_grpc_out=quiet:$$tmp $(PROTOS) && \
	for f in $$tmp/visearch/v1/*; do \
	  cmp -s $$f visearch/v1/$$(basename $$f) || { echo "stale generated code: visearch/v1/$$(basename $$f) (run make proto)"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "generated code is up to date"

demo: models  ## ingest real photos + 2,000 Fashion-MNIST products, then search by image and text
	mkdir -p var
	$(BIN)/visearch demo --fashion 2000 --db var/demo.db

test: models proto-check lint lint-imports typecheck  ## unit + integration tests on real models and stacks, bounded chaos and load runs
	$(BIN)/python -m pytest -m "not full" $(PYTEST_ARGS)

# Full-size fault and load runs (reports/chaos.json, reports/load.json); docs/reliability.md has the figures.
CHAOS_SCALE ?= 1
LOAD_DURATION_S ?= 300
LOAD_INGEST_RATE ?= 1.5
LOAD_SEARCH_RATE ?= 4
LOAD_SEARCH_CLIENTS ?= 4

chaos: models  ## fault injection at full scale: kill -9 per stage, broker/Milvus restarts, Triton stopped 30 s, slow Milvus
	VISEARCH_CHAOS_SCALE=$(CHAOS_SCALE) $(BIN)/python -m pytest tests/chaos -v -s $(PYTEST_ARGS)

load: models  ## steady ingest + concurrent search for LOAD_DURATION_S (default 300 s), then a slow indexer
	VISEARCH_LOAD_DURATION_S=$(LOAD_DURATION_S) VISEARCH_LOAD_INGEST_RATE=$(LOAD_INGEST_RATE) \
	VISEARCH_LOAD_SEARCH_RATE=$(LOAD_SEARCH_RATE) VISEARCH_LOAD_SEARCH_CLIENTS=$(LOAD_SEARCH_CLIENTS) \
	$(BIN)/python -m pytest tests/load -v -s $(PYTEST_ARGS)

eval: models  ## search quality: fashion, near-duplicate and text-to-image suites x ranking profiles (reports/eval)
	$(BIN)/visearch eval --out reports/eval $(EVAL_ARGS)

lint: setup  ## ruff lint (rules in pyproject.toml) and ruff format: zero findings, nothing to reformat
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lint-imports: setup  ## the import layers (import-linter contracts in pyproject.toml), on a copy of the tree as one package
	@tmp=$$(mktemp -d); mkdir $$tmp/visearch && cp -r visearch/. $$tmp/visearch/ && cp -r shared $$tmp/visearch/shared \
	  && cp -r services $$tmp/visearch/services && find $$tmp -name __pycache__ -prune -exec rm -rf {} + ; \
	cd $$tmp && PYTHONPATH=$$tmp $(abspath $(BIN))/lint-imports $(CURDIR)/pyproject.toml --no-cache; rc=$$?; rm -rf $$tmp; exit $$rc

# mypy, like import-linter, cannot follow the package-dir mapping: it checks a tree of symlinks assembled as one
# `visearch` package, and sed maps the paths it reports back to the repo's (shared/..., services/...).
typecheck: setup  ## mypy on shared/ and services/ (strict; config in pyproject.toml, gRPC and messages typed by visearch/v1 .pyi): zero findings
	@tmp=$$(mktemp -d); mkdir $$tmp/visearch && ln -s $(CURDIR)/visearch/* $$tmp/visearch/ \
	  && ln -s $(CURDIR)/shared $$tmp/visearch/shared && ln -s $(CURDIR)/services $$tmp/visearch/services; \
	cd $$tmp && set -o pipefail && $(abspath $(BIN))/mypy --config-file $(CURDIR)/pyproject.toml \
	  --cache-dir $(VAR)/mypy-cache visearch/shared visearch/services | sed -E 's#^visearch/(shared|services)/#\1/#'; \
	rc=$$?; rm -rf $$tmp; exit $$rc

bench: models  ## figures and ratios: HTTP gateway over gRPC (p50 ratio); embedded ingest/search vs bare, per-model latency, recall, draft decode, int8; Kafka chain per stage vs bare, replicas, RSS; search over gRPC on the local stack (blended vs visual_only, text vs bare parts); store layouts (keyword search in Milvus vs in process: RSS and text p50 at 10k/100k rows)
	$(BIN)/python -m tests.bench.run --out reports
	$(BIN)/python -m tests.bench.pipeline --out reports
	$(BIN)/python -m tests.bench.search_stack --out reports
	$(BIN)/python -m tests.bench.store_layouts --out reports
	$(BIN)/python -m tests.bench.gateway --out reports
	$(BIN)/python -m tests.bench.personalisation --out reports

MILVUS_ROWS ?= 10000 70000

bench-milvus: setup  ## Milvus standalone index alone: recall@10 / latency / QPS per HNSW search ef at MILVUS_ROWS vectors
	$(BIN)/python -m tests.bench.milvus --out reports --rows $(MILVUS_ROWS)

chart-check: setup  ## build helm/kubeconform/promtool (first run: minutes) and validate chart, alerts, dashboard
	bash deploy/tools/install-tools.sh
	bash deploy/tools/check-chart.sh

test-unit: setup  ## fast unit tests only
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

kafka-up:  ## start a real Apache Kafka broker (KRaft) on 127.0.0.1:9092, data in var/kafka
	bash deploy/kafka/kafka.sh up

kafka-down:  ## stop the Kafka broker (data kept; kafka.sh down --purge deletes it)
	bash deploy/kafka/kafka.sh down

milvus-up:  ## start Milvus standalone (PyPI milvus 2.3) on 127.0.0.1:19530, data in var/milvus
	bash deploy/milvus/milvus.sh up

milvus-down:  ## stop Milvus standalone
	bash deploy/milvus/milvus.sh down

triton-up: models  ## write the local Triton model repository and start Triton (gRPC 127.0.0.1:8001)
	$(BIN)/visearch models build --triton $(TRITON_REPOSITORY) --flavour local
	bash deploy/triton/triton.sh up $(TRITON_REPOSITORY)

triton-down:  ## stop Triton
	bash deploy/triton/triton.sh down

up: models kafka-up milvus-up triton-up  ## the local stack: Kafka, Milvus, topics, and every service under supervisord
	mkdir -p $(VAR)/log
	$(STACK_ENV) $(BIN)/visearch topics create
	@if [ -S $(VAR)/supervisor.sock ] && $(STACK_ENV) $(BIN)/supervisorctl -c deploy/local/supervisord.conf status >/dev/null 2>&1; then \
	  echo "services already running"; else $(STACK_ENV) $(BIN)/supervisord -c deploy/local/supervisord.conf; fi
	$(BIN)/visearch health --wait 240 127.0.0.1:50054 127.0.0.1:50052 127.0.0.1:50055 127.0.0.1:50056 127.0.0.1:50053 127.0.0.1:50051
	@echo "stack up: publish with '$(BIN)/visearch publish --dataset fashion-mnist --limit 500'," \
	  "search with '$(BIN)/visearch search --server 127.0.0.1:50051 --text \"ankle boot\"'; logs in var/log;" \
	  "HTTP API and playground on http://127.0.0.1:8080/playground/ (OpenAPI: /docs)"

status:  ## state of the local stack
	-@$(STACK_ENV) $(BIN)/supervisorctl -c deploy/local/supervisord.conf status
	-@bash deploy/kafka/kafka.sh status
	-@bash deploy/milvus/milvus.sh status
	-@bash deploy/triton/triton.sh status

down:  ## stop the services, Milvus and Kafka (data kept in var/)
	-@if [ -S $(VAR)/supervisor.sock ]; then $(STACK_ENV) $(BIN)/supervisorctl -c deploy/local/supervisord.conf shutdown; fi
	bash deploy/triton/triton.sh down
	bash deploy/milvus/milvus.sh down
	bash deploy/kafka/kafka.sh down

# A one-node Kubernetes v1.34 cluster inside network namespace visearch-k8s (deploy/k8s/). Not part of `make test`.
# The first k8s-build compiles Kubernetes and CoreDNS from the Go module proxy (~30 min on 2 cores), cached in
# ~/.cache/visearch/k8s; later runs take seconds. Host tools reach the API with KUBECONFIG=var/k8s/pki/host.kubeconfig.
k8s-build:  ## Debian packages + build/cache kube-apiserver, kubelet, ..., kubectl, CoreDNS (~/.cache/visearch/k8s)
	bash deploy/k8s/build.sh all

k8s-up: k8s-build  ## start the local one-node cluster in network namespace visearch-k8s (API relayed to 127.0.0.1:16443)
	bash deploy/k8s/cluster.sh up

k8s-down:  ## stop the local cluster (recorded PIDs only), delete its namespace, restore host sysctls, verify the host
	bash deploy/k8s/cluster.sh down

k8s-status:  ## processes, node and pods of the local cluster
	bash deploy/k8s/cluster.sh status

images: models  ## local images with podman from a debootstrap base: visearch (models from the host cache), Kafka, Milvus, Triton, Prometheus
	bash deploy/images/build.sh all

# The chart on the local cluster (tests/k8s/e2e.py): deps + visearch installed with --wait, ingest with pod loss,
# search, rolling update, drain vs PDB, HPA, Prometheus. Figures: reports/k8s-e2e.json. Needs make k8s-up and make images.
k8s-e2e: setup  ## helm install on the local cluster and exercise it (figures to reports/k8s-e2e.json)
	$(BIN)/python -m tests.k8s.e2e

clean:  ## remove local state (var/, caches); keeps .venv and built models
	rm -rf var .pytest_cache
