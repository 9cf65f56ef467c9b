# One dev loop. `make test` is what CI runs (.ci/run); `make demo` is the offline main job.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo lint typecheck install clean bench bench-setup

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,sim,learn,plot,mcp]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/coverage run -m pytest -q
	$(BIN)/coverage report --fail-under=90

demo: $(STAMP)
	$(BIN)/orchestrator run --offline "How do Python context managers and the with statement handle exceptions?" --out out/demo

# Benchmarks: run by hand, never part of `make test`; results go in docs/benchmarks.md.
# bench/.venv holds the project plus the peers compared against (LangGraph), pinned.
bench-setup:
	sh bench/setup.sh

bench: bench-setup
	bench/.venv/bin/python -m bench.overhead --rounds 3 --json out/bench/overhead.json
	bench/.venv/bin/python -m bench.makespan --json out/bench/makespan.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage out
