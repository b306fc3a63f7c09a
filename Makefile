# Beffroi — `make demo` runs the demo city, `make test` runs the test suite.
# Both set up everything they need: a virtual environment, and the local stack
# (Mosquitto, PostgreSQL + TimescaleDB, installed on first use) under .beffroi/.

SHELL := /bin/bash
VENV ?= .venv
# Debian's python3 (built with PGO + LTO) runs the ingestor faster than other builds.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
BIN := $(VENV)/bin
BEFFROI := $(BIN)/beffroi
PYTEST_ARGS ?=

.PHONY: help venv lock demo test test-at lint typecheck check stack-up stack-down stack-status bench bench-ingest bench-api bench-dashboard bench-replica clean browser-deps dashboard-vendor

help:
	@echo "make demo        start the stack, load the demo city, run simulators, ingestor and API"
	@echo "make test        start the stack and run lint, type checks and the test suite"
	@echo "make test-at     the test suite as if started at AT (Paris time, default 23:55)"
	@echo "make bench       run the benchmarks (results in bench/results/)"
	@echo "make stack-down  stop the local database and broker"
	@echo "make dashboard-vendor  refresh the dashboard's pinned JavaScript libraries (needs npm)"

venv: $(VENV)/.installed

# Every dependency comes from the lock files (exact versions and hashes): requirements-dev.lock
# (runtime + development tools) and requirements-build.lock (the wheel's build backend);
# the package itself is installed without resolving anything.
# The package is rebuilt when a module that mypyc compiles changes (ingest/hotpath.py): the
# editable install runs those modules' C extensions, built in place, not their sources.
COMPILED_SOURCES := $(addsuffix .py,$(subst .,/,$(shell sed -n 's/^    "\([a-z_.]*\)",$$/\1/p' ingest/hotpath.py)))
$(VENV)/.installed: pyproject.toml setup.py ingest/hotpath.py requirements-dev.lock requirements-build.lock $(COMPILED_SOURCES)
	@if ! $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
	  else echo "python3-venv is missing: run 'sudo apt-get install python3-venv'" >&2; exit 1; fi; fi
	@if [ "$${BEFFROI_PURE_PYTHON:-0}" = 0 ] && ! { command -v cc >/dev/null && \
	    test -f "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h"; }; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing a C compiler and the Python headers (mypyc's build)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev python3-dev >/dev/null; \
	  else echo "a C compiler and the Python headers are missing: run 'sudo apt-get install gcc python3-dev'" \
	    "(or set BEFFROI_PURE_PYTHON=1 for a slower, pure-Python ingestor)" >&2; exit 1; fi; fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing Python dependencies into $(VENV)"
	@out=$$($(BIN)/pip install -q --disable-pip-version-check --require-hashes \
	  -r requirements-dev.lock -r requirements-build.lock 2>&1) || { echo "$$out" >&2; exit 1; }
	@echo "building beffroi (mypyc compiles the ingestor's per-message path: about a minute)"
	@rm -f beffroi_compiled__mypyc.*.so && find beffroi devices ingest api simulators -name '*.so' -delete
	@out=$$($(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
	  -e . 2>&1) || { echo "$$out" >&2; exit 1; }
	@$(BIN)/python -c 'import beffroi, psycopg, fastapi' 
	@touch $@

# Re-resolve the dependencies within pyproject.toml's ranges (then run the tests).
lock: venv
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --universal --python-version 3.11 -o requirements.lock --quiet
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.11 -o requirements-dev.lock --quiet
	$(BIN)/uv pip compile deploy/build-requirements.in --generate-hashes --universal --python-version 3.11 -o requirements-build.lock --quiet

stack-up: venv
	@$(BEFFROI) stack up

stack-down: venv
	@$(BEFFROI) stack down

stack-status: venv
	@$(BEFFROI) stack status

demo: venv
	@$(BEFFROI) demo

lint: venv
	@$(BIN)/ruff check .

typecheck: venv
	@$(BIN)/mypy

# The whole suite, then (unless PYTEST_ARGS picks tests) the tests that publish past per-client
# readings once more at 00:20 in Paris, just after the keys of the day before were destroyed.
AFTER_MIDNIGHT_TESTS := $(addprefix tests/integration/,test_ingest.py test_ingest_formats.py \
  test_sim_ingest.py test_opendata.py test_api_coverage.py)
test: venv lint typecheck stack-up browser-deps
	@$(BIN)/python -m pytest $(PYTEST_ARGS)
	@if [ -z "$(filter tests% -k -m,$(PYTEST_ARGS))" ]; then \
	  $(MAKE) --no-print-directory test-at AT=00:20 PYTEST_ARGS="-q $(AFTER_MIDNIGHT_TESTS)"; fi

# The suite with every process's wall clock shifted to start at AT (Paris time; by default
# 23:55, so that the run crosses midnight, when the day's pseudonymisation keys are destroyed).
AT ?= 23:55
test-at: venv browser-deps
	@AT=$(AT) PYTEST_ARGS="$(PYTEST_ARGS)" bash tests/clock/run-at.sh

# The browser tests drive Debian's chromium (Playwright cannot download browsers here).
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -f /usr/lib/chromium/locales/fr.pak ]; then \
	  if [ "$$(id -u)" = 0 ]; then bash beffroi/stack/install-browser.sh; \
	  else echo "the browser tests need Debian's chromium: run 'sudo bash beffroi/stack/install-browser.sh' (chromium, chromium-l10n)" >&2; exit 1; fi; fi

# Refresh the dashboard's third-party files (pinned in beffroi/devtools/dashboard_vendor.py) from
# the npm registry; only this needs Node, running the dashboard does not.
dashboard-vendor:
	@$(PYTHON) -m beffroi.devtools.dashboard_vendor

bench: bench-ingest bench-api bench-dashboard bench-replica

bench-ingest: venv stack-up
	@$(BIN)/python -m bench.ingest

bench-api: venv stack-up
	@$(BIN)/python -m bench.api

bench-dashboard: venv stack-up browser-deps
	@$(BIN)/python -m bench.dashboard

# The API on a hot standby while the ingestor writes to the primary (two clusters of its own).
bench-replica: venv stack-up
	@$(BIN)/python -m bench.replica

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
	find . -name '*.so' -not -path './.venv/*' -not -path './.beffroi/*' -delete
