# make run     install into .venv and run the embedded service (Ctrl-C stops it)
# make test    install, start local PostgreSQL/Redis/RabbitMQ if stopped, run the tests
# make lint    ruff check, ruff format --check, mypy
# make install create .venv and install the project with its dev extra

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: install run test lint

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/notifier up --port $(PORT)

# pytest's exit code is kept (and written to $$PYTEST_EXIT_FILE when set, for
# .ci/run); exit code 5, "no tests collected", is reported as the failure it is.
test: lint
	bash scripts/services.sh up
	@rc=0; $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ -n "$${PYTEST_EXIT_FILE:-}" ]; then echo $$rc > "$$PYTEST_EXIT_FILE"; fi; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): that is a failure" >&2; fi; \
	exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy notifier channels
