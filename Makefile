# lineage-hub: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PY_PACKAGES := lineagehub operator/lineagehub_operator pipeline_runner consumers gateway stack tests bench

.PHONY: setup demo test lint format unit integration stack-up stack-down stack-status crds

setup:
	@scripts/setup.sh

## The main job on the local stack (builds and starts what is missing).
demo: setup
	@$(BIN)/lineage-hub stack up
	@scripts/demo.sh

## Lint, type-check, then every test (unit, integration and end-to-end on the real local stack).
test: setup lint
	$(BIN)/pytest -ra -q tests

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

unit: setup
	$(BIN)/pytest -ra -q tests/unit

stack-up: setup
	$(BIN)/lineage-hub stack up

stack-down:
	$(BIN)/lineage-hub stack down

stack-status:
	$(BIN)/lineage-hub stack status
