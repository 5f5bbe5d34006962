# Targets shared by developers, .ci/run and the GitHub workflows. Run inside an activated venv.
.DEFAULT_GOAL := help
PYTHON ?= python
export TIKTOKEN_CACHE_DIR ?= $(abspath ../shared/tiktoken-cache)

.PHONY: help dev test test-python test-rust lint lint-rust lint-python lint-workflows bench e2e-phoenix

help:
	@echo "make dev    build the Rust core in release mode into the active venv (editable)"
	@echo "make test   pytest (tests + benches as smoke tests) and cargo test"
	@echo "make lint   cargo fmt/clippy, ruff, mypy, stubtest, workflow checks"
	@echo "make bench  run the benchmarks for real, side by side with the peers"
	@echo "make e2e-phoenix  OTLP end to end: spans of examples/otlp_service.py into Arize Phoenix"

dev:
	$(PYTHON) -m pip install -q "maturin>=1.9,<2.0"
	maturin develop --release --extras test,lint

test: test-python test-rust

test-python:
	$(PYTHON) -m pytest

test-rust:
	cargo test --locked

lint: lint-rust lint-python lint-workflows

lint-rust:
	cargo fmt --all --check
	cargo clippy --locked --all-targets --features python -- -D warnings
	cargo clippy --locked --all-targets --all-features -- -D warnings

lint-python:
	ruff check python tests benches scripts examples
	ruff format --check python tests benches scripts examples
	mypy
	$(PYTHON) -m mypy.stubtest instrumentation_sdk._core --allowlist .stubtest-allowlist

lint-workflows:
	check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	zizmor --offline .github/

bench:
	$(PYTHON) -m pytest benches --benchmark-enable --benchmark-json=.benchmarks/latest.json
	$(PYTHON) benches/report.py .benchmarks/latest.json

# A real OpenTelemetry backend from PyPI, in a venv of its own (its pins stay out of ours).
PHOENIX_VENV ?= .venv-phoenix
e2e-phoenix:
	test -x $(PHOENIX_VENV)/bin/phoenix || { python3 -m venv $(PHOENIX_VENV) && $(PHOENIX_VENV)/bin/pip install -q arize-phoenix; }
	$(PYTHON) scripts/phoenix_e2e.py --phoenix $(PHOENIX_VENV)/bin/phoenix
