# wa_portal — the two commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast lint fmt typecheck check migrate bench services clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

## make run: migrate, seed the demo clinic, start web + worker on http://127.0.0.1:5000
run: $(STAMP)
	$(BIN)/python -m wa_portal.devserver

## make test: the whole suite (PostgreSQL, Redis, real worker, Chromium)
test: $(STAMP) services
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(STAMP) services
	$(BIN)/pytest -m "not browser and not slow" $(PYTEST_ARGS)

services:
	@bash .ci/ensure-services.sh

migrate: $(STAMP)
	$(BIN)/flask --app wsgi db upgrade

lint: $(STAMP)
	$(BIN)/ruff check wa_portal tests
	$(BIN)/ruff format --check wa_portal tests

fmt: $(STAMP)
	$(BIN)/ruff format wa_portal tests
	$(BIN)/ruff check --fix wa_portal tests

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) instance/test test-artifacts
