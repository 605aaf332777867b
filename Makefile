# `make run` serves the API; `make test` runs every check; `make check` is its fast part (the
# linters, mypy and every test but tests/deployment/); `make bench` measures it against its
# peers (BENCH_ARGS=--quick for a smoke run, --full for everything); `make dist` builds the sdist
# and the wheel into dist/. Each sets up .venv first.
VENV := .venv
BIN := $(VENV)/bin
INSTALL := $(BIN)/pip install --quiet --config-settings editable_mode=strict -e

.PHONY: run lint check test lint-spec bench dist

run: $(VENV)/.service
	$(BIN)/users-api serve --demo

# The linters, mypy and the package's layers (pyproject.toml), which both of the next two run
# first.
lint: $(VENV)/.tests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# The loop to run every minute: no browser, nginx, Prometheus, wheel build or Node. The `check`
# profile (tests/support/profile.py) runs every test, the load, soak and race tests and
# hypothesis's searches at a smaller size: a few seconds each, not tens. Three processes on the
# two cores: a third of the time a test waits on a server or a timeout, and the third process
# fills it (each test has its own ports, files and PostgreSQL schema). `--dist worksteal`: a
# process that runs out of tests takes some of another's (xdist's default hands out batches, and
# the slow server tests sit together).
PYTEST := $(BIN)/pytest --dist worksteal
check: lint
	USERS_TEST_PROFILE=check $(PYTEST) -n 3 -m "not deployment"

# Everything: the spec's lints, the linters, the same tests at their full size, then
# tests/deployment/ one at a time (they time what nginx and the instances behind it do, and
# share one built wheel).
test: lint-spec lint
	$(PYTEST) -n 2 -m "not deployment"
	$(BIN)/pytest -m deployment

# wrk from Debian's packages, if it is missing (as root, like .ci/run installs Chromium).
bench: $(VENV)/.bench
	command -v wrk >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The sdist, then the wheel from it, as a release is built (a file the sdist misses, the wheel
# misses too); tests/installed.py builds them so from a copy of the checkout.
dist: $(VENV)/.dist
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

# The contract, linted by three tools nobody here wrote; redocly.yaml and .spectral.yaml
# configure the last two, and each fails on a warning.
lint-spec: $(VENV)/.tests node_modules/.installed
	$(BIN)/openapi-spec-validator openapi/users.yaml
	node_modules/.bin/redocly lint openapi/users.yaml
	node_modules/.bin/spectral lint --ruleset .spectral.yaml --fail-severity=warn openapi/users.yaml

# The package `users_api` maps the repo's folders (pyproject.toml). A strict editable install
# links them into one tree under build/, which mypy can read (the default mode is an import
# hook, which it cannot); a file added to or removed from a folder is linked in again.
PACKAGE_FOLDERS := src/users_api src/users_api/middleware handlers store store/migrations store/migrations/versions openapi

$(VENV)/.service: pyproject.toml $(PACKAGE_FOLDERS)
	test -d $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(INSTALL) .
	touch $@

# The bench's packages too: mypy checks bench/, and a test starts its peers.
$(VENV)/.tests: $(VENV)/.service
	$(INSTALL) '.[test,bench]'
	touch $@

$(VENV)/.bench: $(VENV)/.service
	$(INSTALL) '.[bench]'
	touch $@

# `build` alone, not the service: a fresh clone builds without installing it first.
$(VENV)/.dist:
	test -d $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet 'build>=1.2'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@
