"""``--store postgresql://...`` and ``ORCHESTRATOR_STORE``: the CLI on a real PostgreSQL server
(tests/pg_server.py). Runs recorded there are listed, shown, approved and resumed by other
processes, with other homes (other machines, as far as the CLI can tell); a bad URL or an
unreachable server exits 2 naming it, never printing its password."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from pg_server import SECRET_PASSWORD
from test_durability import CLI, KILL_PLAN, SEED, TIME_SCALE, TaggingBrain, _env

from orchestrator.cli import main
from orchestrator.store import PostgresStore
from orchestrator_sim import SimConfig, serve


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def _closed_port() -> int:
    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("command", "store", "named"),
    [
        (["runs"], "mysql://me:{secret}@db.example/runs", "not a PostgreSQL URL"),
        (["show", "run_x"], "postgresql://me:{secret}@127.0.0.1:{port}/runs", "refused"),
        (["runs"], "postgresql://me:{secret}@127.0.0.1/runs?nonsense=1", "not a PostgreSQL URL"),
        (["approve", "run_x", "t"], "postgresql://me:{secret}@127.0.0.1:{port}/r", "refused"),
        (["run", "--offline", "--plan", "{plan}"], "postgres://me:{secret}@127.0.0.1:{port}/r", ""),
    ],
)
@pytest.mark.parametrize("how", ["--store", "ORCHESTRATOR_STORE"])
def test_a_bad_or_unreachable_store_exits_2_naming_it_without_the_password(
    command: list[str],
    store: str,
    named: str,
    how: str,
    two_task_plan: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = store.format(secret=SECRET_PASSWORD, port=_closed_port())
    argv = [part.format(plan=two_task_plan) for part in command]
    if how == "--store":
        argv += ["--store", url]
    else:
        monkeypatch.setenv("ORCHESTRATOR_STORE", url)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"orchestrator: error: {how}")
    assert "me:***@" in captured.err
    assert named.lower() in captured.err.lower()
    assert SECRET_PASSWORD not in captured.err + captured.out
    assert "Traceback" not in captured.err


def test_runs_recorded_in_postgresql_are_listed_shown_approved_and_resumed_elsewhere(
    postgres_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tasks = [
        {"id": "draft", "instruction": "Draft the release note.", "approve": "after",
         "max_output_tokens": 128},
        {"id": "other", "instruction": "List 2 uses of a heap.", "max_output_tokens": 64},
    ]  # fmt: skip
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "release", "tasks": tasks}))
    here, there = ["--home", str(tmp_path / "a")], ["--home", str(tmp_path / "b")]
    store = ["--store", postgres_url]
    assert main(["run", "--plan", str(plan), "--offline", "--json", *store, *here]) == 3
    first = _json(capsys)
    run_id = first["run_id"]

    monkeypatch.setenv("ORCHESTRATOR_STORE", postgres_url)  # another machine, by environment
    assert main(["runs", "--json", *there]) == 0
    (listed,) = _json(capsys)
    assert (listed["run_id"], listed["status"], listed["cost_usd"]) == (
        run_id, "waiting", first["cost_usd"],
    )  # fmt: skip
    assert main(["show", run_id, "--json", *there]) == 0
    assert _json(capsys) == first
    assert main(["approve", run_id, "draft", *there]) == 0
    assert main(["resume", run_id, "--offline", "--json", *there]) == 0
    done = _json(capsys)
    assert done["status"] == "succeeded"
    assert {n["id"]: len(n["attempts"]) for n in done["nodes"]} == {"draft": 2, "other": 1}

    monkeypatch.delenv("ORCHESTRATOR_STORE")  # SQLite, the default, has none of it
    assert main(["runs", *here]) == 0
    assert "no runs in" in capsys.readouterr().out
    assert main(["runs", "--json", *store, *here]) == 0
    assert [r["status"] for r in _json(capsys)] == ["succeeded"]


@pytest.mark.anyio
async def test_a_run_killed_on_one_driver_is_listed_shown_and_resumed_by_another(
    postgres_url: str, tmp_path: Path
) -> None:
    """Real processes: ``run`` SIGKILLed mid-call, then others list, show and resume it."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(KILL_PLAN))
    config = SimConfig(seed=SEED, time_scale=TIME_SCALE)
    brain = TaggingBrain(config, kill_at=4)
    store = ["--store", postgres_url]
    async with serve(config, brain=brain) as sim:
        env = _env(sim.base_url)
        first = ["run", "--plan", str(plan), "--json", "--home", str(tmp_path / "a"), *store]
        process = await anyio.open_process([*CLI, *first], env=env, stdout=subprocess.DEVNULL)
        try:
            with anyio.fail_after(40):
                await brain.arrived.wait()  # its 4th request is in flight
        finally:
            process.send_signal(signal.SIGKILL)
            await process.wait()
            await process.aclose()
        assert process.returncode == -signal.SIGKILL
        killed_at = len(sim.requests)

        async def cli(*args: str) -> Any:
            home = ["--home", str(tmp_path / "b")]
            done = await anyio.run_process(
                [*CLI, *args, "--json", *home, *store], env=env, check=False
            )
            assert done.returncode == 0, done.stderr.decode()[-3000:]
            return json.loads(done.stdout)

        (listed,) = await cli("runs")
        assert listed["status"] == "running"  # as the killed process left it
        assert listed["cost_usd"] > 0  # its finished calls and the one in flight, at worst
        shown = await cli("show", listed["run_id"])
        succeeded = {n["id"] for n in shown["nodes"] if n["status"] == "succeeded"}
        resumed = await cli("resume", listed["run_id"])
        asked = {brain.node_of_hash[r.task_hash] for r in sim.requests[killed_at:] if r.task_hash}
    assert resumed["status"] == "succeeded"
    assert resumed["run_id"] == listed["run_id"]
    assert not asked & succeeded  # what had succeeded was never asked for again
    assert resumed["cost_usd"] >= listed["cost_usd"]
    interrupted = [
        a for n in resumed["nodes"] for a in n["attempts"] if a["error_type"] == "interrupted"
    ]
    assert interrupted  # the attempt in flight at the kill, kept and counted
    opened = await PostgresStore.open(postgres_url)
    try:
        [summary] = await opened.list_runs()
    finally:
        await opened.aclose()
    assert summary.status == "succeeded"
