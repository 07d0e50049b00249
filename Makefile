# MinIODB: `make serve` and `make test` are the two commands of the quick start.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
DATA_DIR ?= ./data
PYTEST_ARGS ?=

.PHONY: serve test lint deploy-check bench proto install install-test system-deps clean

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

## redis-server comes from apt when it is missing (CI runs as root on a fresh machine)
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server with apt"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; \
		$$SUDO systemctl stop redis-server >/dev/null 2>&1 || true; \
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
