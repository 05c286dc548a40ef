# One command to run the main job (`make run`), one to run the tests (`make test`).
# Both set up everything on a fresh machine: the virtual environment in .venv,
# the project and its pinned dependencies, and the Kafka jars (via Maven).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test chaos lint typecheck unit integration clean help browser screenshots promtool kcat

help:
	@echo "make run        set up, start Kafka + a worker, publish a demo campaign, watch its summary"
	@echo "make test       set up, lint, type-check and run every test (starts a test broker)"
	@echo "make kafka-up   start the local Kafka broker in the background (kafka-down stops it)"
	@echo "make registry-up  start the local schema registry (registry-down stops it)"
	@echo "make screenshots  run the browser tests, saving the page's screenshots in docs/screenshots"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

# The browser tests drive Debian's chromium (/usr/bin/chromium) through Playwright;
# installs the package when it is missing (apt-get as root, or sudo -n).
browser:
	@bash deploy/ensure-chromium.sh

# The alert-rule tests (tests/unit/deploy/test_alerts.py) run Debian's promtool
# (package `prometheus`); installs it when missing (apt-get as root, or sudo -n).
promtool:
	@bash deploy/ensure-promtool.sh

# The schema-registry tests fetch raw records with Debian's kcat; installs it when
# missing (apt-get as root, or sudo -n).
kcat:
	@bash deploy/ensure-kcat.sh

include Makefile.kafka
include Makefile.registry

run: install kafka-jars registry-fetch
	bash deploy/run-demo.sh

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

unit: install promtool
	$(BIN)/python -m pytest tests/unit tests/contract -q

integration: install kafka-jars registry-fetch kcat browser
	$(BIN)/python -m pytest tests/integration -q

# Tests marked `timing` show a hazard only when a race goes their way: run them with
# `pytest -m timing`, not here.
test: install kafka-jars registry-fetch kcat browser promtool lint typecheck
	$(BIN)/python -m pytest -q --durations=10 -m "not timing"

# The browser tests only, keeping their full-page screenshots of the campaign page
# (desktop, mobile) and of the campaign list for the README.
screenshots: install kafka-jars browser
	CA_SCREENSHOT_DIR=docs/screenshots $(BIN)/python -m pytest tests/integration/test_page.py -q

# Only the 100k-event SIGKILL run and its negative control.
chaos: install kafka-jars
	$(BIN)/python -m pytest -q --durations=10 -m heavy

clean: kafka-clean registry-clean
	rm -rf .state .run

# Throughput / latency / recovery benchmark (docs/performance.md). Starts the local
# broker if none answers at CA_KAFKA_BOOTSTRAP; options in BENCH_ARGS, e.g.
#   make bench BENCH_ARGS="--events 50000 --repeat 1 --only limit,ours"
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $@

.PHONY: bench
bench: $(BENCH_STAMP) kafka-jars
	$(BIN)/python -m benchmarks.throughput --check-broker || $(MAKE) kafka-up
	$(BIN)/python -m benchmarks.throughput $(BENCH_ARGS)
