# Two commands for a newcomer: `make up` (a local throwaway server running the stack) and
# `make test` (everything CI runs). `make down` removes the throwaway server.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
BIN := $(VENV)/bin
LOCAL_SERVER := webstack-local
LOCAL_HTTP_PORT ?= 8080
LOCAL_HTTPS_PORT ?= 8443

.PHONY: bootstrap up down test lint checks unit molecule

bootstrap:
	VENV=$(VENV) scripts/bootstrap.sh

up: bootstrap
	LOCAL_HTTP_PORT=$(LOCAL_HTTP_PORT) LOCAL_HTTPS_PORT=$(LOCAL_HTTPS_PORT) scripts/local-server.sh up
	$(BIN)/ansible-playbook -i inventory/local/hosts.yml site.yml
	@echo; echo "curl http://127.0.0.1:$(LOCAL_HTTP_PORT)/"; curl -fsS http://127.0.0.1:$(LOCAL_HTTP_PORT)/

down:
	scripts/local-server.sh down

lint: bootstrap checks

# The linters alone: `make test` runs them in a lane of their own, beside the scenarios.
checks:
	$(BIN)/yamllint .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PATH=$(BIN):$$PATH $(BIN)/ansible-lint

unit: bootstrap
	$(BIN)/pytest -q app/tests tests

molecule: bootstrap
	PATH=$(BIN):$$PATH $(BIN)/molecule test --all

# The unit tests and the scenarios in two lanes at once (scripts/test-lanes.sh says why),
# about equally long: each scenario's time is in the closing lines of a run. The linters take a
# third lane for their first half minute.
test: bootstrap
	BIN=$(BIN) scripts/test-lanes.sh 'unit anyapp swarm' 'release default' 'lint'
