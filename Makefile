# Maskloop: `make run` starts everything on embedded defaults, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
MASKLOOP_DATA_DIR ?= $(CURDIR)/data
export MASKLOOP_DATA_DIR

.PHONY: run test install frontend chromium migrate lint clean bench

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: a looser requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[worker,test]'
	touch $(STAMP)

install: $(STAMP)

# npm ci again whenever package-lock.json is newer than the installed tree (a pulled dependency change)
frontend:
	@if [ -f frontend/package.json ]; then \
		cd frontend && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } \
			&& npm run build; \
	fi

chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "could not install chromium: browser tests will fail"; \
	fi

migrate: install
	$(VENV)/bin/maskloop migrate

run: install frontend migrate
	$(VENV)/bin/maskloop run

test: install frontend chromium
	@if [ -f frontend/package.json ]; then cd frontend && npx vitest run --testTimeout=60000; fi
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) data frontend/dist frontend/node_modules
