# The two set-up commands: `make run` and `make test`. Both create the
# virtualenv and install the dependencies they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-unit test-integration test-e2e test-city test-browser test-faults test-cluster test-fuzz lint audit check-deploy format bench bench-ci soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## the whole system on embedded servers, with a small demo wave
	$(BIN)/returnloop up --demo small

test: $(STAMP)  ## unit + integration + e2e; embedded servers unless RETURNLOOP_* point elsewhere
	$(BIN)/pytest tests/unit tests/integration tests/e2e

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

test-integration: $(STAMP)
	$(BIN)/pytest tests/integration -m integration

test-e2e: $(STAMP)
	$(BIN)/pytest tests/e2e -m 'e2e and not city'

test-fuzz: $(STAMP)  ## schemathesis against the running API's OpenAPI schema (bounded examples)
	$(BIN)/pytest tests/e2e/test_fuzz.py -m fuzz

test-city: $(STAMP)  ## the city-sized demo wave (29,400 workers) through the running system
	$(BIN)/pytest tests/e2e/test_city_demo.py tests/e2e/test_city_bureau.py -m city

test-browser: $(STAMP)  ## the web pages in headless Chromium (Debian's; deploy/browser/install.sh)
	$(BIN)/pytest tests/browser -m browser

test-faults: $(STAMP)  ## faults mid-stream (kills, broker and PostgreSQL restarts) vs the oracle; needs deploy/ci-services.sh up
	$(BIN)/pytest tests/faults -m faults

test-cluster: $(STAMP)  ## a broker of a three-broker Kafka cluster SIGKILLed mid-stream, twice, vs the oracle; the cluster is started (deploy/kafka/cluster.sh) and stopped around it; PostgreSQL as RETURNLOOP_DATABASE_URL says
	RETURNLOOP_TOPIC_REPLICATION=3 deploy/kafka/cluster.sh run $(BIN)/pytest tests/faults/test_cluster.py -m cluster

BENCH_WORKERS ?= 100000
bench: $(STAMP)  ## throughput, latency, limits and baselines in one run (docs/PERFORMANCE.md); not a test
	$(BIN)/python -m tests.bench.bench --workers $(BENCH_WORKERS)

bench-ci: $(STAMP)  ## a small bench (5,000 workers) as CI runs it, on the servers RETURNLOOP_* point at
	$(BIN)/python -m tests.bench.bench --workers 5000 --latency-seconds 10 --api-seconds 5 --out bench-results/bench-ci.json

SOAK_MINUTES ?= 30
soak: $(STAMP)  ## one tracker for SOAK_MINUTES (30) at half its measured capacity on the servers RETURNLOOP_* point at; RSS, lag, p99 over time in bench-results/soak.{json,png}; fails if RSS keeps growing or lag does not recover (not in CI)
	$(BIN)/python -m tests.bench.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared

audit: $(STAMP)  ## the virtualenv's distributions (pyproject.toml's pins and their dependencies) against PyPI's advisories; accepted ones in deploy/audit/accepted.toml
	$(BIN)/python deploy/audit/audit.py --accepted deploy/audit/accepted.toml

check-deploy: $(STAMP)  ## Prometheus config, rules and rule tests (promtool), Alertmanager config (amtool), Grafana dashboards
	@command -v promtool >/dev/null || { echo "no promtool: run deploy/prometheus/install.sh (apt-get install prometheus)"; exit 1; }
	@command -v amtool >/dev/null || { echo "no amtool: run deploy/prometheus/install.sh (apt-get install prometheus-alertmanager)"; exit 1; }
	promtool check config deploy/prometheus/prometheus.yml
	promtool check rules deploy/prometheus/rules.yml
	promtool test rules deploy/prometheus/rules_test.yml
	amtool check-config deploy/alertmanager/alertmanager.yml
	amtool config routes test --config.file=deploy/alertmanager/alertmanager.yml --verify.receivers=operator-webhook alertname=ReturnloopApiDown severity=critical
	$(BIN)/pytest tests/unit/test_dashboards.py tests/unit/test_alerting_config.py

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .returnloop .pytest_cache .mypy_cache .ruff_cache
