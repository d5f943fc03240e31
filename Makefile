# Tollway: `make run` starts the whole stack with a demo; `make test` installs and runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROTOS := $(shell find protos -name '*.proto' | sort)

.PHONY: install run test lint protos clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Regenerates Tollway's own protobuf/gRPC code next to the hand-written packages (tollway/<area>/v1/).
# Envoy's contracts come from the xds-protos package and are never generated here.
protos: install
	$(BIN)/python -m tollway.protogen .

run: install
	$(BIN)/tollway up --demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m bench.check

clean:
	rm -rf $(VENV) .tollway .pytest_cache .ruff_cache
