# The documented way to do everything. `make up` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
# The browser tests' headless Chromium: Debian's package, driven by Playwright.
CHROMIUM := /usr/bin/chromium
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install up demo test test-fast lint format bench screenshots clean

install: $(STAMP) $(CHROMIUM)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Only when it is missing; as root (CI is). Playwright never downloads a browser of its own.
$(CHROMIUM):
	@echo "[waypost] installing chromium for the console's browser tests"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
	@test -x $(CHROMIUM) || { echo "[waypost] chromium is not at $(CHROMIUM) after apt-get install" >&2; exit 1; }

up: $(STAMP)  ## start the whole system on embedded PostgreSQL and NATS (ARGS="--port 9000")
	$(VENV)/bin/waypost up $(ARGS)

demo: $(STAMP)  ## load examples/ into a running `make up` and play their events (KEY=wp_... or WAYPOST_ADMIN_KEY)
	$(VENV)/bin/waypost demo $(if $(KEY),--key $(KEY)) $(ARGS)

test: install  ## the whole suite: unit, integration (real Postgres + NATS) and end-to-end
	$(PY) -m pytest $(ARGS)

test-fast: install  ## unit tests only: no servers
	$(PY) -m pytest tests/unit $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy gateway services shared waypost bench

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install  ## the performance figures beside the raw NATS and PostgreSQL rates (ARGS="--quick")
	$(PY) -m bench $(ARGS)

screenshots: install  ## the console's pictures in docs/ (a seeded workspace in headless Chromium)
	$(PY) -m tests.browser.screenshots docs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
