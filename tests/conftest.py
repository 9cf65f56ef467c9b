from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_server import PostgresServer, postgres_server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Runs recorded by the CLI go to a per-test data directory, never the user's."""
    home = tmp_path / "orchestrator-home"
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(home))
    return home


@pytest.fixture
def two_task_plan(tmp_path: Path) -> Path:
    """A small plan file: one task, and one that depends on it."""
    plan = tmp_path / "plan.json"
    document = {
        "goal": "Explain queues",
        "tasks": [
            {"id": "define", "instruction": "Define a queue."},
            {"id": "use", "instruction": "Give one use.", "depends_on": ["define"]},
        ],
    }
    plan.write_text(json.dumps(document))
    return plan


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session (tests/pg_server.py), started on use."""
    with postgres_server() as server:
        yield server


_DATABASES = itertools.count()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """The URL of a new, empty database on the session's server."""
    return postgres.create_database(f"test_{next(_DATABASES)}")
