# Shortcuts for contributors (CONTRIBUTING.md). They use the venv that `make venv` (or .ci/run) creates.
PY ?= .venv/bin/python

.PHONY: venv test-fast test lint format types docs bench-smoke bench soak

venv:
	python3 -m venv .venv && .venv/bin/pip install -q -r requirements-dev.txt

test-fast:  ## the inner loop: everything but the slow fault-injection and end-to-end tests
	$(PY) -m pytest -m "not slow and not soak" -q

test:  ## what CI runs: lint, types, then the full suite
	bash .ci/run

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format:
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

docs:  ## regenerate .env.example, docs/configuration.md and docs/rules.md from the registries
	$(PY) -m sensor_etl.docgen

bench-smoke:
	$(PY) -m bench.run --smoke

bench:
	$(PY) -m bench.run

soak:
	$(PY) -m scripts.soak --minutes 10
