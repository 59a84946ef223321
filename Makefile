# The two commands: `make run` (set up + default simulation) and `make test` (set up + test suite).
# Both create or update .venv and need no internet beyond the package registries.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flonnx-installed

export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1

.PHONY: setup postgresql chromium run test lint protos clean bench bench-quick mutation

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	@touch $(STAMP)

setup: $(STAMP)

# The deployment tests start a throwaway PostgreSQL server (tests/postgres.py): Debian's package,
# installed when missing and we are root (CI); otherwise say how.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null; \
	  else echo "PostgreSQL is missing (the deployment tests need it): sudo apt-get install -y postgresql"; fi; }

# The report's browser tests (marker `browser`) render it in Debian's Chromium through Playwright,
# which cannot download a browser of its own here: installed when missing and we are root (CI).
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; \
	  else echo "Chromium is missing (the browser tests need it): sudo apt-get install -y chromium"; fi; }

run: setup
	$(VENV)/bin/flonnx simulate digits-mixed

# Lint and types first (seconds), then the suite. pytest exits 5 when it collected no test: that is
# a failure of intent, not a pass.
test: setup postgresql chromium lint
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# mypy maps files to modules by folder, and the folders install under one name (flonnx.exchange, …,
# see [tool.setuptools.package-dir]): it checks a view of symlinks laid out as the installed package.
TYPECHECK := build/typecheck
lint: setup
	$(VENV)/bin/ruff check .
	@rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/flonnx
	@for f in flonnx/*.py; do ln -s "$(CURDIR)/$$f" $(TYPECHECK)/flonnx/; done
	@for p in exchange server client simulations; do ln -s "$(CURDIR)/$$p" $(TYPECHECK)/flonnx/$$p; done
	cd $(TYPECHECK) && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml \
		--cache-dir $(CURDIR)/.mypy_cache -p flonnx

# Benchmarks (issue #10; not part of `make test`): JSON in benchmarks/results/, report in
# docs/benchmarks.md. bench-quick: fewer rounds and repeats (Ray starts for B1, B2's end-to-end
# round and B5; B1-INPROCESS, B3, B4 and B6 run without it); bench repeats more.
bench-quick: setup
	$(PY) -m benchmarks run --quick

bench: setup
	$(PY) -m benchmarks run --full

protos: setup
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=exchange/_proto --pyi_out=exchange/_proto protos/flonnx_lineage.proto

clean:
	rm -rf runs .pytest_cache .flwr-home

# Mutation testing (issue #11; not part of `make test`): cosmic-ray mutates a clone of the committed
# tree module by module and runs the tests that guard each; kill rates and survivors in
# build/mutation/results.json, summarised in docs/reliability.md. Hours for every module on 2 cores.
mutation: setup
	$(PY) -m mutation $(MUTATION_ARGS)
