# The two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NODE   := $(PY) opensearch-local/node.py
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: demo test lint bench opensearch-start opensearch-stop opensearch-status opensearch-wipe clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## Runs the sample app and its scenario on the embedded default store (no server needed).
demo: $(STAMP)
	$(PY) -m integrations.demo

## Creates the venv, starts the local OpenSearch, runs every test, stops the node.
test: $(STAMP)
	$(NODE) start --optional
	status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; $(NODE) stop; exit $$status

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(NODE) start
	status=0; $(PY) -m benchmarks $(BENCH_ARGS) || status=$$?; $(NODE) stop; exit $$status

opensearch-start: $(STAMP)
	$(NODE) start
opensearch-stop: $(STAMP)
	$(NODE) stop
opensearch-status: $(STAMP)
	$(NODE) status
opensearch-wipe: $(STAMP)
	$(NODE) wipe

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
