#!/bin/sh
# Create bench/.venv: the project (editable) plus the benchmark-only peers (LangGraph),
# kept out of the project's own environment and dependencies.
set -e
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '..[sim,learn,plot,ray]' -r requirements.txt
.venv/bin/python -c "import importlib.metadata as m; print('bench venv ready: langgraph', m.version('langgraph'))"
