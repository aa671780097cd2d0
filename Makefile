# The two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NODE   := $(PY) opensearch-local/node.py
PYTEST_ARGS ?=
BENCH_ARGS ?=
# The ISM and Alerting plugin zips (Maven Central does not serve them) are installed into the
# local node when this folder exists; set it to another folder, or to empty for none.
AUDIT_OPENSEARCH_PLUGINS_DIR ?= $(wildcard $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../shared/opensearch-plugins))
OPENSEARCH_TARGETS := test bench hostile opensearch-start opensearch-stop opensearch-status opensearch-wipe \
	opensearch-cluster-start opensearch-cluster-stop opensearch-cluster-status
# Exported to node.py and to pytest alike: tests that start more nodes use the same install,
# and a different plugin set would mean re-assembling it.
$(OPENSEARCH_TARGETS): export AUDIT_OPENSEARCH_PLUGINS_DIR := $(AUDIT_OPENSEARCH_PLUGINS_DIR)

.PHONY: demo test lint bench dashboards clean $(OPENSEARCH_TARGETS)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## Runs the sample app and its scenario on the embedded default store (no server needed).
demo: $(STAMP)
	$(PY) -m integrations.demo

## Creates the venv, installs Debian's Chromium for the browser tests when missing, starts the
## local OpenSearch, runs every test, stops the node.
test: $(STAMP)
	bash tools/ensure-chromium.sh
	$(NODE) start --optional --fresh
	status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; $(NODE) stop; exit $$status

## The full hostile-input run (about 25,000 generated cases); prints its figures, saves them to hostile.json.
hostile: $(STAMP)
	$(NODE) start
	status=0; AUDIT_HOSTILE_PROFILE=hostile AUDIT_HOSTILE_REPORT=hostile.json $(PY) -m pytest -q -p no:cacheprovider \
		tests/hostile tests/integration/test_hostile_opensearch.py || status=$$?; $(NODE) stop; exit $$status

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## Regenerates the bundled OpenSearch Dashboards saved objects (package data and kibana_dashboards/).
dashboards: $(STAMP)
	$(PY) -m audit_middleware.opensearch.dashboards --write audit_middleware/opensearch/dashboards kibana_dashboards

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
## A local 3-node cluster (HTTP 9211-9213) for failover tests; see opensearch-local/node.py.
opensearch-cluster-start: $(STAMP)
	$(NODE) cluster start
opensearch-cluster-stop: $(STAMP)
	$(NODE) cluster stop
opensearch-cluster-status: $(STAMP)
	$(NODE) cluster status

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
