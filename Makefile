# Tollway: `make run` starts the whole stack with a demo; `make test` installs and runs every test;
# `make check` is the fast tier (lint, types, every test that needs no server).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROTOS := $(shell find protos -name '*.proto' | sort)

TOOLS := .tools
BUF := $(TOOLS)/node_modules/.bin/buf

.PHONY: install tools portal-assets browser promtool run test check typecheck lint protos clean bench bench-scale soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# buf (from the npm registry) lints protos/ in the test suite; `make run` does not need it.
$(BUF):
	mkdir -p $(TOOLS)
	cd $(TOOLS) && npm install --silent --no-audit --no-fund @bufbuild/buf@1.75.0

tools: $(BUF)

# The portal's chart library (uPlot, from the npm registry), vendored into the package's static files at
# build time: nothing is fetched when the portal runs. Pages work without it (tables instead of charts).
UPLOT_VERSION := 1.6.32
PORTAL_VENDOR := portal/web/static/vendor
$(PORTAL_VENDOR)/uPlot.iife.min.js:
	rm -rf build/uplot && mkdir -p build/uplot $(PORTAL_VENDOR)
	cd build/uplot && npm pack --silent uplot@$(UPLOT_VERSION) >/dev/null && tar xzf uplot-$(UPLOT_VERSION).tgz
	cp build/uplot/package/dist/uPlot.iife.min.js build/uplot/package/dist/uPlot.min.css \
	   build/uplot/package/LICENSE $(PORTAL_VENDOR)/
	rm -rf build/uplot

portal-assets: $(PORTAL_VENDOR)/uPlot.iife.min.js

# The portal's browser tests drive Debian's chromium through Playwright (no browser download).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

browser: $(CHROMIUM)

# promtool (Debian's prometheus package, unpacked here rather than installed: no server is started)
# checks deploy/prometheus/alerts.yml in the test suite (tests/e2e/test_metrics_e2e.py).
PROMTOOL := build/prometheus/usr/bin/promtool
$(PROMTOOL):
	rm -rf build/prometheus && mkdir -p build/prometheus
	cd build/prometheus && (apt-get download prometheus || (apt-get update -q && apt-get download prometheus)) \
	  && dpkg-deb -x prometheus_*.deb . && rm prometheus_*.deb

promtool: $(PROMTOOL)

# Regenerates Tollway's own protobuf/gRPC code next to the hand-written packages (tollway/<area>/v1/).
# Envoy's contracts come from the xds-protos package and are never generated here.
protos: install
	$(BIN)/python -m tollway.protogen .

run: install portal-assets
	$(BIN)/tollway up --demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# Needs no PostgreSQL, Redis, Envoy or npm: tests/conftest.py marks those that do `integration`.
# Two workers: the server-free tests are CPU-bound, and this machine has two cores.
check: lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not integration" -n 2

# The suite runs in one xdist worker process so that a hard crash of the interpreter (grpcio's asyncio
# layer on Python 3.11 can segfault at a test's teardown, grpc/grpc#31441) fails only the test that was
# running, which is then run once more in a fresh worker; an ordinary failure is never rerun
# (--only-rerun matches no assertion or error message).
PYTEST_CRASH_ISOLATION := -n 1 --reruns 1 --only-rerun '^WorkerProcessCrashed$$'

# PostgreSQL and Redis: the ones at TOLLWAY_TEST_POSTGRES_URL / TOLLWAY_TEST_REDIS_URL (default
# 127.0.0.1:5432 and :6379) when they answer, else private ones scripts/test-services starts and stops.
test: install tools portal-assets browser promtool
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python scripts/test-services -- $(BIN)/python -m pytest -q $(PYTEST_CRASH_ISOLATION)

# `make bench`: the end-to-end gateway table (Envoy alone, Envoy's own key check, the no-op gRPC floors,
# Tollway in each mode; h2load installed from the distribution's packages when missing) and the
# per-component benchmarks, a few minutes in all; figures in bench/results.json (bench/README.md).
#   make bench BENCH_ARGS="--quick"    or "--only B,N,C-memory --envoy-concurrency 2 --rounds 5"
# The scale benchmark (bench/scale.py: two keymgr replicas on PostgreSQL at 127.0.0.1:5432, 100k keys,
# a few minutes). The 1M comparison takes much longer:
#   make bench-scale SCALE_ARGS="--keys 100000 --keys 1000000 --changes 10"
BENCH_ARGS ?=
SCALE_ARGS ?= --keys 100000

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

# `make soak`: the soak test (tests/e2e/test_soak.py) for ten minutes instead of the 25 s `make test`
# gives it: a stack left idle and under light traffic, then no gRPC stream of Envoy's to Tollway closed
# or reset, no failed call, and every request counted by usage. SOAK_SECONDS=1800 make soak for longer.
SOAK_SECONDS ?= 600

soak: install
	SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/e2e/test_soak.py

bench-scale: install
	$(BIN)/python -m bench.scale $(SCALE_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .tollway .pytest_cache .ruff_cache $(PORTAL_VENDOR) test-artifacts build/prometheus
