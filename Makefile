# otel-logkit front door. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000

.DEFAULT_GOAL := help
.PHONY: help install test test-inprocess compat lint typecheck run demo stack collector logql-grammar e2e e2e-inprocess bench clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv and install otel-logkit with its test, lint and e2e tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,e2e]'
	touch $@

test: install ## unit and integration tests (Python only, no collector)
	$(BIN)/python -m pytest -m "not e2e" tests

test-inprocess: install ## the integration tests again, exporting from the app's own threads (LOGKIT_EXPORT_PROCESS=false)
	LOGKIT_EXPORT_PROCESS=false $(BIN)/python -m pytest -m "not e2e" tests/integration

compat: install ## Flask's and FastAPI's own test suites, bare vs under otel-logkit-instrument: same outcome per test
	$(BIN)/python compat/run.py

lint: install ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install ## mypy --strict on the package
	$(BIN)/mypy

run: install ## run the example shop under otel-logkit-instrument on 127.0.0.1:$(PORT), JSON on stdout
	OTEL_SERVICE_NAME=$${OTEL_SERVICE_NAME:-shop} LOGKIT_ENV=$${LOGKIT_ENV:-dev} \
	  $(BIN)/otel-logkit-instrument uvicorn examples.shop.main:app --host 127.0.0.1 --port $(PORT)

demo: install ## the shop with fake payment/SMS gateways: gateway spans, redacted summaries
	PORT=$(PORT) bash examples/shop/demo.sh

stack: install ## nginx + the shop on PostgreSQL + the collector's filelog overlay on 127.0.0.1 (needs nginx, postgresql)
	$(BIN)/python -m examples.stack.run --port $${STACK_PORT:-8080}

collector: ## build bin/otelcol-logkit with the OpenTelemetry Collector Builder (needs Go)
	bash collector/build.sh

LOGQL_DIR := tests/e2e/logql

logql-grammar: $(LOGQL_DIR)/node_modules/.package-lock.json ## npm ci: Grafana's LogQL grammar, for the dashboard's e2e check

$(LOGQL_DIR)/node_modules/.package-lock.json: $(LOGQL_DIR)/package-lock.json
	cd $(LOGQL_DIR) && npm ci --no-audit --no-fund

e2e: install collector logql-grammar ## end-to-end tests through the real collector, local backends and Prometheus
	$(BIN)/python -m pytest -m e2e tests/e2e

e2e-inprocess: install collector logql-grammar ## the end-to-end tests again with LOGKIT_EXPORT_PROCESS=false
	LOGKIT_EXPORT_PROCESS=false $(BIN)/python -m pytest -m e2e tests/e2e

bench: install ## benchmarks (bench/; bench_http.py needs wrk, bench_celery.py redis-server: apt-get install -y wrk redis-server), see bench/RESULTS.md
	$(BIN)/python bench/bench_logging.py
	$(BIN)/python bench/bench_redaction.py
	$(BIN)/python bench/bench_card_false_positives.py
	$(BIN)/python bench/bench_buffer.py
	$(BIN)/python bench/bench_http.py
	$(BIN)/python bench/bench_celery.py

clean: ## remove build output and caches (keeps .venv)
	rm -rf bin build .pytest_cache .mypy_cache .ruff_cache
