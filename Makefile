# haredis: the two commands a user needs are `make demo` and `make test`.
# Every target installs what it needs itself, so a fresh Debian machine works.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
SEEDS  ?= 500
SCHEDULES ?= 20
SEED   ?= 1
STAMP  := $(VENV)/.installed

.PHONY: test lint demo sim bench chaos chaos-deps system-deps venv clean

# Debian's redis-server (which also provides redis-sentinel) is what the
# integration tests and the benchmarks run against; install it when missing.
# promtool (Debian's prometheus package) checks the /metrics exposition and the alert rules.
system-deps:
	@missing=""; \
	for cmd in redis-server:redis-server redis-sentinel:redis-sentinel redis-cli:redis-tools \
	           promtool:prometheus openssl:openssl; do \
	  command -v $${cmd%%:*} >/dev/null 2>&1 || missing="$$missing $${cmd##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends $$missing >/dev/null; \
	fi
	@# The packages start system-wide services; the tests never use them, stop them so they cost nothing.
	@-systemctl stop redis-server redis-sentinel prometheus >/dev/null 2>&1 || true

# Debian's iptables: the chaos rig cuts links with iptables rules inside network namespaces.
chaos-deps:
	@if ! command -v iptables >/dev/null 2>&1 || ! command -v iptables-restore >/dev/null 2>&1; then \
	  echo "installing Debian packages: iptables"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends iptables >/dev/null; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test,dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

test: system-deps chaos-deps venv
	$(PY) -m pytest -q -p no:cacheprovider --sim-seeds=$(SEEDS) tests

lint: venv
	$(VENV)/bin/ruff check haredis tests bench
	$(VENV)/bin/ruff format --check haredis
	$(VENV)/bin/mypy --strict haredis

sim: venv
	$(PY) -m tests.sim --seeds $(SEEDS)

# Network partitions, kills and pauses in network namespaces (root): the named scenarios, then
# SCHEDULES random schedules from SEED. Last line: schedules=N violations=V lost_wait_acked=W ...
chaos: system-deps chaos-deps venv
	$(PY) -m tests.chaos --schedules $(SCHEDULES) --seed $(SEED)

# Every benchmark (bench/all.py): markdown + JSON under bench/results/, a summary in
# bench/results/summary.md. Full size takes over an hour (the simulator soak alone ~45 min on 2 cores);
# `make bench BENCH_ARGS=--quick` takes minutes. Never part of `make test`.
BENCH_ARGS ?=
bench: system-deps venv
	$(PY) -m bench.all $(BENCH_ARGS)

demo: system-deps venv
	$(PY) -m tests.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
