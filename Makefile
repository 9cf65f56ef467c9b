# One dev loop. `make test` is what CI runs (.ci/run); `make demo` is the offline main job.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo lint typecheck install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
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
	$(BIN)/orchestrator run --offline --plan examples/plans/release_notes.json --out out/demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage out
