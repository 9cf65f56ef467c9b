# One dev loop. `make test` is what CI runs (.ci/run); `make demo` is the offline main job.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo lint typecheck install clean bench bench-setup postgres-server

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,sim,learn,plot,mcp,postgres,ray]'
	touch $(STAMP)

install: $(STAMP) postgres-server

# The PostgreSQL tests start a server of their own (tests/pg_server.py) from the server
# binaries of Debian's postgresql package, installed here when missing (CI runs as root).
postgres-server:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	else \
		echo "the PostgreSQL tests need its server: sudo apt-get install postgresql" >&2; exit 1; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck postgres-server
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
