# make run     install the runtime lock into .venv and run the embedded service (Ctrl-C stops it)
# make test    install, start local PostgreSQL/Redis/RabbitMQ if stopped, run the tests
# make check   the inner loop: lint, then the unit, channel and web tests (a few minutes)
# make lint    ruff check, ruff format --check, mypy
# make docs    build the docs site (docs/, mkdocs-material) into build/site, failing on any warning
# make install create .venv and install the project with its dev extra, as the lock pins it
# make lock    re-pin requirements.lock / requirements-dev.lock after pyproject.toml changed

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-runtime
PORT ?= 8000
PYTEST_ARGS ?=
UV_VERSION ?= 0.13.9
# Keeps the pins already in the locks; LOCK_ARGS=--upgrade moves every one to the newest.
LOCK_ARGS ?=
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet \
	--custom-compile-command 'make lock' $(LOCK_ARGS)

.PHONY: install run test check lint lock docs

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml or the lock changed since the last install.
# Every dependency comes from the lock, at its pinned version and hash; the
# project itself is installed on top without dependencies, and `pip check`
# fails if pyproject.toml wants something the lock lacks (run `make lock`).
$(STAMP): pyproject.toml requirements-dev.lock | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m pip check --disable-pip-version-check
	touch $(STAMP)

# Resolves pyproject.toml for Python 3.11 on any platform (uv, from PyPI) into
# the runtime lock (the Docker image installs it) and the runtime + dev lock.
lock: | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q 'uv==$(UV_VERSION)'
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) -o requirements-dev.lock

# What the service needs and no more (requirements.lock, as the Docker image has
# it): no test or lint tools (111 packages, ~415 MB, against 144 and ~600 MB).
# A dev install has it all (the two locks pin the same versions), so after
# `make install` this only checks.
$(RUN_STAMP): pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m pip check --disable-pip-version-check
	touch $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/notifier up --port $(PORT)

# scripts/test.sh runs the suite in two parts (see there); pytest's exit code is kept (and written to $$PYTEST_EXIT_FILE when set, for
# .ci/run); exit code 5, "no tests collected", is reported as the failure it is.
test: lint docs
	bash scripts/services.sh up
	@rc=0; PYTEST=$(BIN)/pytest bash scripts/test.sh $(PYTEST_ARGS) || rc=$$?; \
	if [ -n "$${PYTEST_EXIT_FILE:-}" ]; then echo $$rc > "$$PYTEST_EXIT_FILE"; fi; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): that is a failure" >&2; fi; \
	exit $$rc

# The daily loop: no broker, no worker, no fault injection. The channel tests
# use the simulators on 127.0.0.1, the web tests SQLite; `make test` runs the rest.
check: lint
	$(BIN)/pytest -q -n 2 --dist loadfile tests/unit tests/channels tests/web $(PYTEST_ARGS)

# --strict: a broken link, a page missing from the nav or an unknown anchor fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy notifier channels
