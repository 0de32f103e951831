# The two commands of a fresh machine: `make up` (run the service) and `make test` (the whole suite).
# Each installs what it needs: uv (through pip when missing), then the locked dependencies.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PYTHON ?= python3

.PHONY: up test test-fast lint typecheck check install

$(UV):
	$(PYTHON) -m pip install --user --quiet uv || $(PYTHON) -m pip install --quiet uv

# Bytecode is compiled here, once: the suite starts well over a hundred API, worker and CLI processes, and where
# PYTHONDONTWRITEBYTECODE is set (as on our CI machine) each would otherwise compile every module it imports.
install: $(UV)
	$(UV) sync --frozen --extra embedded --compile-bytecode
	$(UV) run --no-sync python -m compileall -q app tasks tests bench migrations celeryconfig.py > /dev/null

up: install
	$(UV) run wallet up

test: install
	$(UV) run pytest

# The in-process tier: everything but the tests that drive real API and worker processes (marked e2e).
test-fast: install
	$(UV) run pytest -m "not e2e"

lint: install
	$(UV) run ruff check app tasks tests migrations bench celeryconfig.py
	$(UV) run ruff format --check app tasks tests migrations bench celeryconfig.py

typecheck: install
	$(UV) run mypy

check: lint typecheck test
