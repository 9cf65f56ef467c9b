"""The SQLite store's file handling: what it refuses (clearly, leaving the file as it was)
and what it must open whatever the path looks like."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator import Attempt, Engine, NodeResult, NodeStatus, Plan, Task
from orchestrator.cli import main
from orchestrator.store import SQLiteStore, StoreError, StoreListener
from orchestrator.store.sqlite import SCHEMA_VERSION
from orchestrator.testing import TestModel

pytestmark = pytest.mark.anyio


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def refused_untouched(path: Path, match: str) -> None:
    """Opening ``path`` as a store fails with ``match``, and the file is left as it was."""
    before = digest(path)
    with pytest.raises(StoreError, match=match):
        await SQLiteStore.open(path)
    assert digest(path) == before


async def store_with_a_run(path: Path, run_id: str = "r", tasks: int = 3) -> None:
    store = await SQLiteStore.open(path)
    try:
        plan = Plan(goal="g", tasks=[Task(id=f"t{i}", instruction="x" * 400) for i in range(tasks)])
        await Engine(TestModel("y" * 300), listeners=[StoreListener(store)]).run(
            plan, run_id=run_id
        )
    finally:
        await store.aclose()


@pytest.mark.parametrize("directory", ["with#hash", "with?question", "with space", "a%20b"])
async def test_a_store_reopens_whatever_its_path_holds(tmp_path: Path, directory: str) -> None:
    if directory == "a%20b":  # a foreign file next door, which a mis-decoded path would read
        (tmp_path / "a b").mkdir()
        foreign = sqlite3.connect(tmp_path / "a b" / "runs.db")
        foreign.execute("CREATE TABLE meta (x)")
        foreign.close()
    path = tmp_path / directory / "runs.db"
    await store_with_a_run(path, run_id="mine")
    store = await SQLiteStore.open(path)
    try:
        assert [run.run_id for run in await store.list_runs()] == ["mine"]
    finally:
        await store.aclose()


async def test_damaged_store_is_refused_by_name_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await store_with_a_run(path, tasks=200)
    data = bytearray(path.read_bytes())
    for offset in range(8192, len(data), 4096):  # the header survives; later pages do not
        data[offset + 100 : offset + 400] = bytes(range(256)) + bytes(44)
    path.write_bytes(bytes(data))
    await refused_untouched(path, r"runs\.db is a damaged run store \(SQLite quick_check")


async def test_store_without_a_valid_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await store_with_a_run(path)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='two' WHERE key='schema_version'")
    db.commit()
    db.close()
    await refused_untouched(path, "no valid store schema version \\('two'\\)")


async def test_an_empty_sqlite_database_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    await refused_untouched(path, "is not an orchestrator run store")


async def test_a_new_store_is_whole_from_its_first_byte(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = await SQLiteStore.open(path)
    await store.aclose()
    db = sqlite3.connect(path)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        db.close()
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert tables == {"meta", "runs", "attempts", "nodes", "leases"}
    assert mode == "wal"


def test_cli_on_a_store_from_a_newer_version_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    db = sqlite3.connect(home / "runs.db")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("app", "tiered-orchestrator run store"), ("schema_version", str(SCHEMA_VERSION + 1))],
    )
    db.commit()
    db.close()
    before = digest(home / "runs.db")
    assert main(["runs", "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert "written by a newer version" in err
    assert str(home / "runs.db") in err
    assert digest(home / "runs.db") == before


async def test_concurrent_writes_are_group_committed_and_fail_alone(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "runs.db")
    batches: list[int] = []
    commit = store._commit

    def counting(batch: list[Any]) -> None:
        batches.append(len(batch))
        commit(batch)

    store._commit = counting  # type: ignore[method-assign, assignment]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    plan = Plan(goal="g", tasks=[Task(id=f"t{i}", instruction="x") for i in range(100)])
    await store.start_run("r", plan, now)
    failures: list[Exception] = []

    async def write(i: int) -> None:
        attempt = Attempt(number=1, tier="haiku", model="m", started_at=now, cost_usd=0.01)
        await store.record_attempt("r", f"t{i}", attempt)

    async def orphan() -> None:  # no such run: the foreign key refuses it, alone
        try:
            await store.record_node("ghost", NodeResult(id="t0", status=NodeStatus.SUCCEEDED))
        except StoreError as exc:
            failures.append(exc)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(write, i)
            tg.start_soon(orphan)
    stored = await store.load_run("r")
    await store.aclose()
    assert len(stored.attempts) == 100  # every write of the batch held
    assert stored.summary.cost_usd == pytest.approx(1.0)
    assert len(failures) == 1
    assert "FOREIGN KEY" in str(failures[0]).upper()
    assert sum(batches) == 100 + 1 + 1 + 1  # start, 100 attempts, the orphan, the load
    assert len(batches) < 20  # writes queued behind a batch went together


class BlockedWriter:
    """Holds the store's writer thread inside its first batch until released; records the
    size of every batch and how many calls were queued when each batch began."""

    def __init__(self, store: SQLiteStore) -> None:
        self.batches: list[int] = []
        self.queued_seen: list[int] = []
        self.entered = anyio.Event()
        self.release = threading.Event()
        self._commit = store._commit
        self._store = store
        store._commit = self  # type: ignore[method-assign, assignment]

    def __call__(self, batch: list[Any]) -> None:
        self.batches.append(len(batch))
        self.queued_seen.append(self._store.queued)
        if len(self.batches) == 1:
            anyio.from_thread.run_sync(self.entered.set)
            assert self.release.wait(timeout=30), "the test never released the writer"
        self._commit(batch)


async def test_queued_writes_are_bounded_and_callers_wait_for_room(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "runs.db", max_queued=4)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    await store.start_run("r", Plan(goal="g", tasks=[Task(id="t", instruction="x")]), now)
    writer = BlockedWriter(store)
    returned: list[int] = []

    async def write(i: int) -> None:
        cost = 0.5 if i == 2 else 0.01  # writes 1 and 2 are the same attempt: 2 lands last
        attempt = Attempt(number=1, tier="haiku", model="m", started_at=now, cost_usd=cost)
        await store.record_attempt("r", "t1" if i == 2 else f"t{i}", attempt)
        returned.append(i)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(write, 0)
            await writer.entered.wait()  # the first batch (write 0) is held in the thread
            for i in range(1, 20):
                tg.start_soon(write, i)
            await anyio.wait_all_tasks_blocked()
            assert store.queued == 4  # writes 1-4 wait for the next batch ...
            assert returned == []  # ... the other 15 wait for room, nothing of theirs queued
            assert store.congested  # so the engine would start no more nodes meanwhile
            writer.release.set()
        stored = await store.load_run("r")
    await store.aclose()
    assert sorted(returned) == list(range(20))
    assert not store.congested
    assert writer.batches[0] == 1
    assert max(writer.batches[1:]) <= 4  # no batch ever held more than the bound
    assert max(writer.queued_seen) <= 4
    assert sum(writer.batches) == 20 + 1  # every write once, and the load
    assert len(stored.attempts) == 19  # t0, t1 (written by 1, then by 2), t3 to t19
    assert stored.attempts["t1"][0].cost_usd == 0.5  # queued order kept within a batch


async def test_cancelled_callers_leave_the_store_consistent(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "runs.db", max_queued=3)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    await store.start_run("r", Plan(goal="g", tasks=[Task(id="t", instruction="x")]), now)
    writer = BlockedWriter(store)

    async def write(i: int) -> None:
        attempt = Attempt(number=1, tier="haiku", model="m", started_at=now)
        await store.record_attempt("r", f"t{i}", attempt)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(write, 0)
            await writer.entered.wait()
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as waiting:
                    for i in range(1, 10):
                        waiting.start_soon(write, i)
                    await anyio.wait_all_tasks_blocked()
                    scope.cancel()  # 1-3 were queued, 4-9 were waiting for room
                    writer.release.set()  # 1 writes the batch of 1-3 even so
            assert scope.cancelled_caught
        await write(10)  # the store still works, and the batch after it was written
        stored = await store.load_run("r")
    await store.aclose()
    assert sorted(stored.attempts) == ["t0", "t1", "t10", "t2", "t3"]
    assert store.queued == 0
    with pytest.raises(StoreError, match="closed"):
        await write(11)


async def test_a_failing_row_in_a_grouped_write_fails_alone(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "runs.db")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    await store.start_run("r", Plan(goal="g", tasks=[Task(id="t", instruction="x")]), now)
    writer = BlockedWriter(store)
    failures: list[str] = []

    async def record(run_id: str, node_id: str) -> None:
        try:
            await store.record_node(run_id, NodeResult(id=node_id, status=NodeStatus.SUCCEEDED))
        except StoreError as exc:
            failures.append(f"{node_id}: {exc}")

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(record, "r", "first")
            await writer.entered.wait()
            for i in range(5):  # one batch of six rows for the nodes table, one of them bad
                tg.start_soon(record, "ghost" if i == 2 else "r", f"n{i}")
            tg.start_soon(record, "r", "n0")  # and n0 again, later in the same batch
            await anyio.wait_all_tasks_blocked()
            writer.release.set()
        stored = await store.load_run("r")
    await store.aclose()
    assert writer.batches[1] == 6
    assert sorted(stored.nodes) == ["first", "n0", "n1", "n3", "n4"]
    assert len(failures) == 1
    assert failures[0].startswith("n2: ")
    assert "FOREIGN KEY" in failures[0].upper()
