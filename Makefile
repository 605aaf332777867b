# `make run` serves the API; `make test` runs every check. Both set up .venv first.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint-spec

run: $(VENV)/.service
	$(BIN)/users-api serve --demo

test: lint-spec $(VENV)/.tests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

# The contract, linted by two tools nobody here wrote; redocly.yaml configures the second.
lint-spec: $(VENV)/.tests node_modules/.installed
	$(BIN)/openapi-spec-validator openapi/users.yaml
	node_modules/.bin/redocly lint openapi/users.yaml

$(VENV)/.service: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.tests: $(VENV)/.service
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@
