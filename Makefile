# The two quickstart commands: `make run` (API, worker and scheduler on the local services)
# and `make test`. Both install what they need into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install services run test lint bench

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

test: install services
	$(VENV)/bin/pytest

bench: install services
	$(PY) -m bench.throughput
	$(PY) -m bench.latency
	$(PY) -m bench.scale
	$(PY) -m bench.memory

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
