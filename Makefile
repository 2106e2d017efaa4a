# lineage-hub: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# The compiled decoder's Rust (native/): rustup's cargo where it is not on PATH.
CARGO := $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)
NATIVE_TARGET := $(or $(LINEAGE_HUB_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/lineage-hub)/native-target
PY_PACKAGES := lineagehub operator/lineagehub_operator pipeline_runner consumers gateway stack tests bench

.PHONY: setup demo test lint format unit integration stack-up stack-down stack-status crds mutation

setup:
	@scripts/setup.sh

## The main job on the local stack (builds and starts what is missing; a Jaeger still to
## compile is built in the background while the run goes), then the run's verdicts; exits
## non-zero naming any that is not True. RUN=FILE applies another run.
demo: setup
	@$(BIN)/lineage-hub stack up --later jaeger
	@$(BIN)/python -m stack.demo $(if $(RUN),--file=$(RUN))

## Lint, type-check, then every test (unit, integration and end-to-end on the real local stack).
test: setup lint
	$(BIN)/pytest -ra -q --durations=15 tests

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	cd native && $(CARGO) fmt --check
	cd native && CARGO_TARGET_DIR=$(NATIVE_TARGET) $(CARGO) clippy --release --quiet -- -D warnings

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	cd native && $(CARGO) fmt

unit: setup
	$(BIN)/pytest -ra -q tests/unit

## Mutation testing (not part of `test`; tens of minutes on two cores): the consumers' delivery
## code, the operator's decide, the gateway's auth. `make mutation TARGETS=decide` runs one;
## surviving mutants are listed in .artifacts/mutation/report.txt. Staged from the last commit;
## MUTATION_INTEGRATION=1 adds real-Kafka tests (under the stack lock), MUTATION_ARGS="--only GLOB
## --tests FILE" runs some mutants against some tests (a short lock hold).
mutation: setup
	$(BIN)/python scripts/mutation.py $(TARGETS) $(MUTATION_ARGS)

stack-up: setup
	$(BIN)/lineage-hub stack up

stack-down:
	$(BIN)/lineage-hub stack down

stack-status:
	$(BIN)/lineage-hub stack status

## ---- kind (needs Docker and kind; the local stack above needs neither) ----
IMAGE ?= lineage-hub:dev
KIND_CLUSTER ?= lineage-hub
HELM ?= helm
RELEASE ?= hub
RELEASE_NAMESPACE ?= lineage-hub

.PHONY: images kind-up kind-load install demo-kind

## The one project image (operator, consumers, stage runner).
images:
	docker build -t $(IMAGE) .

## A kind cluster with the UI ports and the example data mounted (kind-config.yaml).
kind-up:
	mkdir -p .kind/output && chmod 0777 .kind/output
	kind create cluster --config kind-config.yaml

kind-load:
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)

## The chart with the values for kind: NodePorts, the loaded image, the example data.
install:
	$(HELM) upgrade --install $(RELEASE) charts/lineage-hub \
		--namespace $(RELEASE_NAMESPACE) --create-namespace \
		-f charts/lineage-hub/values-kind.yaml \
		--set image.repository=$(firstword $(subst :, ,$(IMAGE))) \
		--set image.tag=$(lastword $(subst :, ,$(IMAGE))) \
		--wait --timeout 10m

## Everything on kind: cluster, image, chart, the example run until it succeeds.
demo-kind: kind-up images kind-load install
	kubectl apply -f examples/pipelinerun.yaml
	kubectl wait --for=condition=Succeeded pipelinerun/orders-daily --timeout=10m
	kubectl get pipelineruns
