from __future__ import annotations

import json
from pathlib import Path

import pytest


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
