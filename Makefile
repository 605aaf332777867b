# `make run` serves the API; `make test` runs every check. Both set up .venv first.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test

run: $(VENV)/.service
	$(BIN)/users-api serve --demo

test: $(VENV)/.tests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

$(VENV)/.service: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.tests: $(VENV)/.service
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@
