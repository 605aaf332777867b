# `make run` serves the API; `make test` runs every check; `make bench` measures it against its
# peers (BENCH_ARGS=--quick for a smoke run, --full for everything). Each sets up .venv first.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint-spec bench

run: $(VENV)/.service
	$(BIN)/users-api serve --demo

test: lint-spec $(VENV)/.tests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

# wrk from Debian's packages, if it is missing (as root, like .ci/run installs Chromium).
bench: $(VENV)/.bench
	command -v wrk >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The contract, linted by two tools nobody here wrote; redocly.yaml configures the second.
lint-spec: $(VENV)/.tests node_modules/.installed
	$(BIN)/openapi-spec-validator openapi/users.yaml
	node_modules/.bin/redocly lint openapi/users.yaml

$(VENV)/.service: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

# The bench's packages too: mypy checks bench/, and a test starts its peers.
$(VENV)/.tests: $(VENV)/.service
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

$(VENV)/.bench: $(VENV)/.service
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@
