# MinIODB: `make serve` and `make test` are the two commands of the quick start.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
DATA_DIR ?= ./data
# Two workers (pytest-xdist): most tests wait on processes they start (nodes, Redis, S3),
# so two share two cores well (the suite: 15 min serial, 9 min with -n 2 on 2 cores).
PYTEST_ARGS ?= -n 2

CLUSTER_NODES ?= 3
CLUSTER_DIR ?= cluster
CLUSTER_ARGS ?=

.PHONY: serve test lint bench proto install install-test system-deps deploy-check cluster cluster-down clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test system-deps

## redis-server, redis-sentinel, haproxy and chromium come from apt when missing (CI runs as root
## on a fresh machine); the services the packages would start are stopped: tests start their own
APT_INSTALL = SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server with apt"; \
		$(APT_INSTALL) redis-server >/dev/null; \
		$$SUDO systemctl stop redis-server >/dev/null 2>&1 || true; \
	}
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium with apt (the web console's browser tests; no playwright install)"; \
		$(APT_INSTALL) chromium >/dev/null; \
	}
	@command -v redis-sentinel >/dev/null 2>&1 || { \
		echo "installing redis-sentinel with apt"; \
		$(APT_INSTALL) redis-sentinel >/dev/null; \
		$$SUDO systemctl stop redis-sentinel >/dev/null 2>&1 || true; \
	}
	@command -v haproxy >/dev/null 2>&1 || { \
		echo "installing haproxy with apt"; \
		$(APT_INSTALL) haproxy >/dev/null; \
		$$SUDO systemctl stop haproxy >/dev/null 2>&1 || true; \
	}

serve: install
	$(BIN)/miniodb serve --data-dir $(DATA_DIR)

test: install-test deploy-check
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports

## a local cluster without Docker: Redis, $(CLUSTER_NODES) nodes and HAProxy from deploy/, state in ./cluster/
cluster: install system-deps
	$(PY) -m flight_server.cluster up --nodes $(CLUSTER_NODES) --dir $(CLUSTER_DIR) $(CLUSTER_ARGS)

cluster-down:
	@if [ -x $(PY) ]; then $(PY) -m flight_server.cluster down --dir $(CLUSTER_DIR); \
	else $(PYTHON) -m flight_server.cluster down --dir $(CLUSTER_DIR); fi

## the image, the Swarm stack and the Kubernetes manifests, validated offline (no Docker, no
## cluster); tests/integration/test_deploy_files.py runs the same tools plus semantic checks
K8S_MANIFESTS := $(filter-out deploy/k8s/kustomization.yaml,$(wildcard deploy/k8s/*.yaml))
deploy-check: install-test
	$(BIN)/hadolint Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/swarm/docker-stack.yml
	$(BIN)/kubernetes-validate --strict --quiet $(K8S_MANIFESTS)

bench: install-test
	$(BIN)/pytest -q tests/micro --benchmark-only
	$(BIN)/miniodb bench all --report bench/RESULTS.md --plot bench/results.png --json bench/results.json

## regenerate the committed Flight SQL protobuf modules
proto: | $(BIN)/python
	$(PY) -m pip install --quiet 'grpcio-tools>=1.60'
	$(PY) -m grpc_tools.protoc -I clients/proto --python_out=clients/proto --pyi_out=clients/proto clients/proto/*.proto

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
