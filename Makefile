# Developer shortcuts. Everything assumes the venv made by README's commands (.venv).
PY ?= .venv/bin/python

.PHONY: install test check lint format screenshots binary bench bench-dashboard

install:
	python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]"

test:
	$(PY) -m pytest

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format:
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

check: lint test

screenshots:
	$(PY) -m ringside_tui.screenshots

binary:
	bash scripts/build_binary.sh

bench-dashboard:
	$(PY) bench/dashboard_latency.py

bench:
	bash bench/run.sh
