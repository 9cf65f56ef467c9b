"""Run leases across real processes sharing one store (a SQLite file, or a real PostgreSQL
server): one owner of a run at a time."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and pid liveness: POSIX"),
]

CLAIMANT = """
import json, os, sys
import anyio
from orchestrator.exceptions import RunLeased
from orchestrator.store import LeaseOwner, PostgresStore, SQLiteStore

async def main(where, run_id):
    postgres = where.startswith("postgresql://")
    store = await (PostgresStore.open(where) if postgres else SQLiteStore.open(where))
    print(json.dumps({"ready": os.getpid()}), flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)  # "go"
    owner = LeaseOwner.current()
    try:
        await store.acquire_lease(run_id, owner, 3600)  # no expiry within the test
    except RunLeased as exc:
        print(json.dumps({"refused": str(exc), "pid": exc.pid, "host": exc.host}), flush=True)
        await store.aclose()
        return 2
    print(json.dumps({"acquired": os.getpid()}), flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)  # hold it until told, or killed
    await store.release_lease(run_id, owner)
    await store.aclose()
    return 0

sys.exit(anyio.run(main, sys.argv[1], sys.argv[2]))
"""


class Claimant:
    """A process that opens the store, then asks for the lease when told to."""

    def __init__(self, process: Process) -> None:
        self.process = process
        assert process.stdout is not None
        self._lines = TextReceiveStream(process.stdout)
        self._buffer = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    async def line(self) -> dict[str, Any]:
        while "\n" not in self._buffer:
            self._buffer += await self._lines.receive()
        line, self._buffer = self._buffer.split("\n", 1)
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    async def tell(self, word: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(f"{word}\n".encode())

    async def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()  # reaped: its pid is gone


async def claimant(path: str) -> Claimant:
    process = await anyio.open_process([sys.executable, "-c", CLAIMANT, path, "run-1"])
    started = Claimant(process)
    assert (await started.line())["ready"] == process.pid
    return started


async def claim(path: str) -> tuple[Claimant, dict[str, Any]]:
    started = await claimant(path)
    await started.tell("go")
    return started, await started.line()


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the processes meet: a SQLite file, or a database on the test server."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


async def test_one_owner_at_a_time_and_a_killed_owner_is_taken_over(shared_store: str) -> None:
    path = shared_store
    processes: list[Claimant] = []
    try:
        with anyio.fail_after(60):
            first, outcome = await claim(path)
            processes.append(first)
            assert outcome == {"acquired": first.pid}

            second, outcome = await claim(path)
            processes.append(second)
            assert outcome["pid"] == first.pid  # refused, naming the holder
            assert f"pid {first.pid} on " in outcome["refused"]
            assert await second.process.wait() == 2

            await first.kill()  # SIGKILL: it never released its lease, valid for an hour
            third, outcome = await claim(path)
            processes.append(third)
            assert outcome == {"acquired": third.pid}  # its holder is gone: taken over

            await third.kill()  # stale again; now two processes race for it
            racers = [await claimant(path), await claimant(path)]
            processes += racers
            for racer in racers:
                await racer.tell("go")
            outcomes = [await racer.line() for racer in racers]
            winners = [r for r, o in zip(racers, outcomes, strict=True) if "acquired" in o]
            assert len(winners) == 1, outcomes
            (winner,) = winners
            (lost,) = [o for o in outcomes if "refused" in o]
            assert lost["pid"] == winner.pid
            await winner.tell("release")
            assert await winner.process.wait() == 0
            assert [await racer.process.wait() for racer in racers].count(2) == 1

            after, outcome = await claim(path)  # released: free for the next one
            processes.append(after)
            assert outcome == {"acquired": after.pid}
            await after.tell("release")
            assert await after.process.wait() == 0
    finally:
        for process in processes:
            if process.process.returncode is None:
                process.process.kill()
            with anyio.CancelScope(shield=True):
                await process.process.aclose()
