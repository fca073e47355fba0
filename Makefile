# tradingview_scraper — developer and production entry points.
# Every target works on a fresh clone: the ones that need the venv build it first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
export RAY_AUTH_MODE ?= disabled
export PYTHONHASHSEED ?= 0

PROFILE ?= canary
LAB_ARGS ?=

.PHONY: setup test export check-sync nbtest pytest docs docs-check lab clean bench help flow-production

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/:/'

setup: $(STAMP)  ## create .venv and install the package with pinned dev dependencies

# Re-installs only when the dependency declarations change (idempotent, fast when up to date).
$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

export: $(STAMP)  ## regenerate tradingview_scraper/ from nbs/ (and copy nbs/production/ into the package)
	source $(BIN)/activate && nbdev_export && $(BIN)/python tools/check_sync.py --copy-production

check-sync: $(STAMP)  ## the library equals what nbs/ exports, notebooks are clean, the packaged production notebooks are nbs/production
	@source $(BIN)/activate && $(BIN)/python tools/check_sync.py

nbtest: $(STAMP)  ## run the notebook tests (add FLAGS=slow for the long ones)
	source $(BIN)/activate && nbdev_test --n_workers 2 --timing $(if $(FLAGS),--flags "$(FLAGS)",)

pytest: $(STAMP)  ## run the system tests in tests/ (FLAGS=slow adds the ones marked slow)
	source $(BIN)/activate && $(BIN)/python -m pytest -q tests $(if $(findstring slow,$(FLAGS)),,-m "not slow")

docs-check: $(STAMP)  ## build the offline docs into a temp dir, check every page and open each in headless Chromium (skipped, saying so, without it)
	source $(BIN)/activate && $(BIN)/python tools/build_docs.py --check

test: $(STAMP)  ## everything CI checks: sync, notebook tests, system tests, docs smoke check
	$(MAKE) --no-print-directory check-sync
	$(MAKE) --no-print-directory nbtest
	$(MAKE) --no-print-directory pytest
	$(MAKE) --no-print-directory docs-check

docs: $(STAMP)  ## build the docs site into _docs/ (Quarto when on PATH, else offline HTML)
	source $(BIN)/activate && $(BIN)/python tools/build_docs.py

flow-production: $(STAMP)  ## the main job: run PROFILE (default canary) end to end into runs/<run_id>/ (RUN_ID=, EXECUTOR=)
	source $(BIN)/activate && tvs run --profile $(PROFILE) $(if $(RUN_ID),--run-id $(RUN_ID),) $(if $(EXECUTOR),--executor $(EXECUTOR),)

lab: $(STAMP)  ## open JupyterLab on nbs/ (LAB_ARGS="--port 8899 --no-browser" are passed to jupyter lab)
	source $(BIN)/activate && jupyter lab --notebook-dir=nbs $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) $(LAB_ARGS)

bench: $(STAMP)  ## run every benchmark in benchmarks/ (results in benchmarks/results/)
	source $(BIN)/activate && for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:  ## remove build outputs (keeps .venv)
	rm -rf _proc _docs build dist *.egg-info .pytest_cache
