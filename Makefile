# The two commands: `make run` (set up + default simulation) and `make test` (set up + test suite).
# Both create or update .venv and need no internet beyond the package registries.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flonnx-installed

export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1

.PHONY: setup run test lint protos clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/flonnx simulate digits-mixed

# Lint and types first (seconds), then the suite. pytest exits 5 when it collected no test: that is
# a failure of intent, not a pass.
test: setup lint
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy exchange server client simulations flonnx

protos: setup
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=exchange/_proto --pyi_out=exchange/_proto protos/flonnx_lineage.proto

clean:
	rm -rf runs .pytest_cache .flwr-home
