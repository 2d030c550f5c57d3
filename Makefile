# haredis: the two commands a user needs are `make demo` and `make test`.
# Every target installs what it needs itself, so a fresh Debian machine works.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
SEEDS  ?= 500
STAMP  := $(VENV)/.installed

.PHONY: test lint demo sim bench chaos system-deps venv clean

# Debian's redis-server (which also provides redis-sentinel) is what the
# integration tests and the benchmarks run against; install it when missing.
system-deps:
	@if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-sentinel >/dev/null 2>&1 \
	    || ! command -v redis-cli >/dev/null 2>&1; then \
	  echo "installing Debian's redis-server, redis-sentinel and redis-tools"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    redis-server redis-sentinel redis-tools >/dev/null; \
	fi
	@# The package starts a system-wide redis on 6379; the tests never use it, stop it so it costs nothing.
	@-systemctl stop redis-server >/dev/null 2>&1 || true

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test,dev]'
	touch $(STAMP)

venv: $(STAMP)

test: system-deps venv
	$(PY) -m pytest -q -p no:cacheprovider --sim-seeds=$(SEEDS) tests

lint: venv
	$(VENV)/bin/ruff check haredis tests bench
	$(VENV)/bin/ruff format --check haredis
	$(VENV)/bin/mypy --strict haredis

sim: venv
	$(PY) -m tests.sim --seeds $(SEEDS)

demo: system-deps venv
	$(PY) -m tests.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
