# The two quickstart commands: `make run` (API, worker and scheduler on the local services)
# and `make test`. Both install what they need into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install services nginx chromium run test lint bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

services:
	bash scripts/services.sh

run: install services
	$(VENV)/bin/warren run

test: install services nginx chromium
	$(VENV)/bin/pytest

# nginx for the test of the recommended deployment (tests/e2e/test_slowclients.py, which fails
# in CI without it and is skipped elsewhere): installed when missing, as root on Debian.
nginx:
	@PATH="$$PATH:/usr/sbin"; command -v nginx >/dev/null || [ "$$(id -u)" != 0 ] \
	  || ! command -v apt-get >/dev/null || apt-get install -y -qq nginx >/dev/null \
	  || { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; } \
	  || echo "nginx could not be installed: tests/e2e/test_slowclients.py skips (fails in CI)"

# Debian's Chromium for the dashboard's browser tests (tests/ui, driven by Playwright, which
# never downloads a browser of its own): installed when missing, as root on Debian.
chromium:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] \
	  || ! command -v apt-get >/dev/null || apt-get install -y -qq chromium >/dev/null \
	  || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium could not be installed: tests/ui fail without /usr/bin/chromium"

# The benchmarks also need the `bench` extra (Celery, the baseline of bench.throughput).
$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

bench: $(VENV)/.bench-installed services
	$(PY) -m bench.throughput
	$(PY) -m bench.latency
	$(PY) -m bench.scale
	$(PY) -m bench.memory
	$(PY) -m bench.slowclients
	$(PY) -m bench.schedules
	$(PY) -m bench.claimcost

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
