"""The SQLite run store: one file, WAL mode, every write off the event loop.

All database work runs in a worker thread (``anyio.to_thread``) on one connection, one
batch at a time, so the event loop never blocks on disk. Writes are group-committed: the
calls that queue up while a batch is being written go together in the next transaction
(each in its own savepoint, so one failing call fails alone), and each caller returns only
once its batch has committed, so a node's result is still durable before its dependents
start. A wide DAG then pays one transaction and one thread round trip per batch rather than
per event. A process killed at any point leaves the file consistent (SQLite's journal) and
at most loses the batch being written, whose callers had not returned.

The file carries an application marker and a schema version in ``meta``. A file that is
not SQLite, a damaged store (SQLite's ``quick_check`` fails), a SQLite database of another
application, or a store written by a newer version gets a clear :class:`StoreError`, and
the file is left untouched: those checks read it through a read-only connection, and
nothing is written before they pass. A new store gets its tables and marker in one
transaction, before it is switched to WAL, so a process killed while creating it leaves
either no store or a whole one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio

from orchestrator.exceptions import UserError
from orchestrator.plan import Plan
from orchestrator.results import Attempt, NodeResult, RunResult
from orchestrator.store.base import RunStore, RunSummary, StoredRun

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "StoreError"]

SCHEMA_VERSION = 1
APP_MARKER = "tiered-orchestrator run store"

T = TypeVar("T")


@dataclass(slots=True)
class _Call(Generic[T]):
    """One queued store call and, once its batch has been written, its outcome."""

    work: Callable[[sqlite3.Connection], T]
    result: T | None = None
    error: Exception | None = None
    done: bool = False


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, goal TEXT NOT NULL, status TEXT NOT NULL, plan TEXT NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT, result TEXT
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL REFERENCES runs(run_id), node_id TEXT NOT NULL,
    number INTEGER NOT NULL, started_at TEXT NOT NULL, cost_usd REAL NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (run_id, node_id, number, started_at)
);
CREATE TABLE IF NOT EXISTS nodes (
    run_id TEXT NOT NULL REFERENCES runs(run_id), node_id TEXT NOT NULL,
    status TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (run_id, node_id)
);
"""


class StoreError(UserError):
    """The store file cannot be used (not SQLite, another application's, or too new)."""


class SQLiteStore(RunStore):
    """A :class:`RunStore` in one SQLite file.

    Open with ``await SQLiteStore.open(path)``; close with ``await store.aclose()``.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._writer = anyio.Lock()
        self._queue: list[_Call[Any]] = []

    @classmethod
    async def open(cls, path: str | Path) -> SQLiteStore:
        """Open (or create) the store at ``path``.

        Raises:
            StoreError: If the file is not a store this version can use; it is not modified.
        """
        path = Path(path)
        connection = await anyio.to_thread.run_sync(_connect, path)
        return cls(path, connection)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        call = _Call(work)
        self._queue.append(call)
        async with self._writer:  # whoever holds it writes everything queued so far
            if not call.done:
                batch, self._queue = self._queue, []
                await anyio.to_thread.run_sync(self._commit, batch)
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]  # set when done without error

    def _commit(self, batch: list[_Call[Any]]) -> None:
        """Run ``batch`` in one transaction, each call in its own savepoint (worker thread)."""
        db = self._db
        try:
            with db:  # commits at the end, or rolls back if the batch itself fails
                db.execute("BEGIN")  # one transaction: the savepoints nest inside it
                for call in batch:
                    db.execute("SAVEPOINT call")
                    try:
                        call.result = call.work(db)
                    except sqlite3.DatabaseError as exc:
                        db.execute("ROLLBACK TO call")
                        call.error = StoreError(f"run store {self.path}: {exc}")
                    except Exception as exc:  # noqa: BLE001  (its caller gets it)
                        db.execute("ROLLBACK TO call")
                        call.error = exc
                    db.execute("RELEASE call")
        except sqlite3.DatabaseError as exc:  # the commit itself failed: nobody's write holds
            for call in batch:
                call.error = StoreError(f"run store {self.path}: {exc}")
        for call in batch:
            call.done = True

    async def aclose(self) -> None:
        """Close the connection (after any batch being written)."""
        async with self._writer:
            await anyio.to_thread.run_sync(self._db.close)

    async def start_run(self, run_id: str, plan: Plan, started_at: datetime) -> None:
        """Record a new run, or mark a resumed one running again."""

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO runs (run_id, goal, status, plan, started_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(run_id) DO UPDATE"
                " SET status='running', finished_at=NULL, result=NULL",
                (run_id, plan.goal, "running", plan.model_dump_json(), started_at.isoformat()),
            )

        await self._run(work)

    async def record_attempt(self, run_id: str, node_id: str, attempt: Attempt) -> None:
        """Insert or update an attempt."""
        row = (run_id, node_id, attempt.number, attempt.started_at.isoformat(),
               attempt.cost_usd, attempt.model_dump_json())  # fmt: skip
        await self._run(
            lambda db: db.execute(
                "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE"
                " SET cost_usd=excluded.cost_usd, body=excluded.body",
                row,
            )
        )

    async def record_node(self, run_id: str, result: NodeResult) -> None:
        """Record a node's final result."""
        row = (run_id, result.id, result.status.value, result.model_dump_json())
        await self._run(
            lambda db: db.execute(
                "INSERT INTO nodes VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE"
                " SET status=excluded.status, body=excluded.body",
                row,
            )
        )

    async def finish_run(self, result: RunResult) -> None:
        """Record the final result."""
        row = (result.status.value, result.finished_at.isoformat(), result.model_dump_json(),
               result.run_id)  # fmt: skip
        await self._run(
            lambda db: db.execute(
                "UPDATE runs SET status=?, finished_at=?, result=? WHERE run_id=?", row
            )
        )

    async def load_run(self, run_id: str) -> StoredRun:
        """Return a run (``KeyError`` naming it if unknown)."""
        return await self._run(lambda db: _load(db, run_id))

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        """Newest first."""
        return await self._run(lambda db: _list(db, limit))


def _connect(path: Path) -> sqlite3.Connection:
    existed = path.exists() and path.stat().st_size > 0
    if existed:
        _check_existing(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=5000")
        if not existed:
            _create(db)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open the run store {path}: {exc}") from None
    return db


def _create(db: sqlite3.Connection) -> None:
    """Tables and marker in one transaction: a killed process leaves all or nothing."""
    level, db.isolation_level = db.isolation_level, None  # explicit BEGIN/COMMIT below
    try:
        db.execute("BEGIN")
        for statement in filter(str.strip, _SCHEMA.split(";")):
            db.execute(statement)
        db.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [("app", APP_MARKER), ("schema_version", str(SCHEMA_VERSION))],
        )
        db.execute("COMMIT")
    finally:
        db.isolation_level = level


def _check_existing(path: Path) -> None:
    """Read-only checks of a file that already exists; never writes to it."""
    uri = f"{path.resolve().as_uri()}?mode=ro"  # percent-encoded: '#', '?' and '%' are safe
    try:
        db = sqlite3.connect(uri, uri=True)
        try:
            (health,) = db.execute("PRAGMA quick_check(1)").fetchone()
            rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not an orchestrator run store ({exc}); "
            "point ORCHESTRATOR_HOME or --home at another directory"
        ) from None
    if rows.get("app") != APP_MARKER:
        raise StoreError(f"{path} is a SQLite database of another application; not touching it")
    if health != "ok":
        raise StoreError(
            f"{path} is a damaged run store (SQLite quick_check: {health}); it was left as it "
            "is: move it aside (or recover it with the sqlite3 shell's .recover) and start a "
            "new one"
        )
    raw_version = rows.get("schema_version", "")
    if not raw_version.isdigit():
        raise StoreError(
            f"{path} has no valid store schema version ({raw_version!r}); not touching it"
        )
    version = int(raw_version)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer version (store schema {version}; this version "
            f"reads up to {SCHEMA_VERSION}); upgrade tiered-orchestrator to read it"
        )


def _load(db: sqlite3.Connection, run_id: str) -> StoredRun:
    row = db.execute(
        "SELECT goal, status, plan, started_at, finished_at, result FROM runs WHERE run_id=?",
        (run_id,),
    ).fetchone()
    if row is None:
        raise KeyError(f"no run {run_id!r} in the store")
    goal, status, plan, started_at, finished_at, result = row
    attempts: dict[str, list[Attempt]] = {}
    for node_id, body in db.execute(
        "SELECT node_id, body FROM attempts WHERE run_id=? ORDER BY node_id, started_at, number",
        (run_id,),
    ):
        attempts.setdefault(node_id, []).append(Attempt.model_validate_json(body))
    nodes = {
        node_id: NodeResult.model_validate_json(body)
        for node_id, body in db.execute("SELECT node_id, body FROM nodes WHERE run_id=?", (run_id,))
    }
    summary = _summary(run_id, goal, status, started_at, finished_at, _cost(attempts))
    return StoredRun(
        summary=summary,
        plan=Plan.model_validate_json(plan),
        nodes=nodes,
        attempts=attempts,
        result=RunResult.model_validate_json(result) if result else None,
    )


def _list(db: sqlite3.Connection, limit: int) -> list[RunSummary]:
    rows = db.execute(
        "SELECT r.run_id, r.goal, r.status, r.started_at, r.finished_at,"
        " COALESCE((SELECT SUM(cost_usd) FROM attempts a WHERE a.run_id = r.run_id), 0)"
        " FROM runs r ORDER BY r.started_at DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [_summary(*row) for row in rows]


def _summary(  # noqa: PLR0917  (one positional argument per column of the row)
    run_id: str, goal: str, status: str, started_at: str, finished_at: str | None, cost: float
) -> RunSummary:
    return RunSummary(
        run_id=run_id,
        goal=goal,
        status=status,
        cost_usd=cost,
        started_at=datetime.fromisoformat(started_at),
        finished_at=datetime.fromisoformat(finished_at) if finished_at else None,
    )


def _cost(attempts: dict[str, list[Attempt]]) -> float:
    return sum(a.cost_usd for node in attempts.values() for a in node)
