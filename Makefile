# The template's entry point: `make demo` (the main job) and `make test` (the suite).
# Both create .venv from the hashed lock and need only Python 3.11+ and make.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Baked projects find uv here and share its cache, so each installs in seconds.
export UV := $(abspath $(BIN)/uv)
export PATH := $(abspath $(BIN)):$(PATH)
PYTEST_ARGS ?=
# The suite runs on TEST_WORKERS processes, each file whole on one (a file's tests share a baked
# project), the longest files first (tests/conftest.py), so the demo, act's workflow runs and the
# baked combinations overlap on the two cores.
TEST_WORKERS ?= 2
BENCH_ARGS ?=
DEMO_ARGS ?=

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_./-]+:.*## / {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: requirements/template.txt
	@echo "==> creating $(VENV) with the template's tools"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements/template.txt
	@touch $@

.PHONY: install
install: $(VENV)/.installed ## create .venv with cookiecutter, pytest-cookies, uv and ruff

.PHONY: demo
demo: install ## scaffold the defaults into build/demo/ and run the project's lifecycle (DEMO_ARGS="--until drift")
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

.PHONY: test
test: install ## the whole test suite: bake, validate prompts, run baked projects' lint and tests
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15 $(PYTEST_ARGS)

.PHONY: lint
lint: install ## ruff on the template's own code (hooks, tests, scripts)
	$(BIN)/ruff check hooks tests scripts bench
	$(BIN)/ruff format --check hooks tests scripts bench

.PHONY: bench
bench: install ## every benchmark in bench/, side by side with its baseline (BENCH_ARGS="--only serve,image")
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

requirements/template.txt: requirements/template.in ## re-resolve the template's tool lock
	$(UV) pip compile $< --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --generate-hashes --quiet --custom-compile-command "make $@" -o $@

.PHONY: locks
locks: install ## re-resolve the generated project's hashed locks (3.11 and 3.12)
	$(BIN)/python scripts/relock.py

.PHONY: clean
clean: ## remove build/ and caches (keeps .venv)
	rm -rf build .pytest_cache .ruff_cache
