# The README's two commands: `make demo` (the main job) and `make test` (the whole suite).
# Both set up what they need first (scripts/setup.sh), so they work on a fresh machine.
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup demo test bench lint clean

setup:
	@VENV=$(VENV) scripts/setup.sh

demo: setup
	$(BIN)/txmon demo $(DEMO_ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff, the layer contract of docs/architecture.md (import-linter) and the type check (mypy)
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/bench_synth.py
	$(BIN)/python benchmarks/bench_loader.py --generate
	$(BIN)/python benchmarks/bench_analyze.py
	$(BIN)/python benchmarks/bench_gcn.py
	$(BIN)/python benchmarks/bench_producer.py
	$(BIN)/python benchmarks/bench_stream_core.py
	$(BIN)/python benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
