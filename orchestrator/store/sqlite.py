"""The SQLite run store: one file, WAL mode, every write off the event loop.

All database work runs in a worker thread (``anyio.to_thread``) on one connection, one
batch at a time, so the event loop never blocks on disk. Writes are group-committed: the
calls that queue up while a batch is being written go together in the next transaction,
and each caller returns only once its batch has committed, so a node's result is still
durable before its dependents start. Every write is one statement, which SQLite undoes
alone if it fails, so one failing call fails alone. A process killed at any point leaves
the file consistent (SQLite's journal) and at most loses the batch being written, whose
callers had not returned.

Back-pressure: at most ``max_queued`` calls wait for the next batch; further callers wait
before anything of theirs is queued, and while the queue is full the store reports itself
``congested``, so that the engine starts no more nodes at once (each would only wait).
A queued call holds references, not a serialised copy (records are serialised in the
writer thread), and waits on its batch's event, not on a lock of its own: the callers of
a batch are released together, in one turn of the loop. Rows of one table in a batch go
in multi-row statements, so the writer thread calls into SQLite (and gives up the GIL) a
few times a batch rather than a few times a row.

A node's result is stored once, in ``nodes``; a finished run's result is stored without
its nodes and rebuilt from them on load (schema 2).

The file carries an application marker and a schema version in ``meta``. A file that is
not SQLite, a damaged store (SQLite's ``quick_check`` fails), a SQLite database of another
application, or a store written by a newer version gets a clear :class:`StoreError`, and
the file is left untouched: those checks read it through a read-only connection, and
nothing is written before they pass. A new store gets its tables and marker in one
transaction, before it is switched to WAL, so a process killed while creating it leaves
either no store or a whole one.

Run leases (:mod:`orchestrator.store.lease`) are rows of ``leases``, one per leased run.
Each lease operation is a write: it runs in a batch that takes the write lock first
(``BEGIN IMMEDIATE``), so the holder it reads is still the holder when it writes, and of
two processes racing for a stale lease exactly one takes it. The table is created with a
new store, and on opening an older file that lacks it (a file that cannot be written is
still opened, for reading; its lease operations fail). The schema version stays 2: older
versions never read ``meta`` beyond their checks nor any table they do not know, so they
still read and write such a file correctly (only without leases, as before), and nothing
an older version writes makes a lease wrong. Raising the version would lock them out of
their own runs for a table that changes nothing they store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import chain
from pathlib import Path
from typing import Any

import anyio

from orchestrator.exceptions import UserError
from orchestrator.plan import Plan
from orchestrator.pricing import ZERO_USD, to_usd
from orchestrator.results import Attempt, NodeResult, NodeStatus, RunResult
from orchestrator.store.base import RunStore, RunSummary, StoredRun, spent_on
from orchestrator.store.lease import Lease, LeaseOwner, claim, extend

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "StoreError"]

SCHEMA_VERSION = 2
"""2: a finished run's ``result`` is stored without its nodes, which are in ``nodes``
(1 stored them twice). Version 1 files are read as written, and marked 2 once opened."""
APP_MARKER = "tiered-orchestrator run store"
MAX_QUEUED = 1024
"""Default bound on store calls accepted but not yet committed (see ``SQLiteStore.open``)."""


@dataclass(frozen=True, slots=True, eq=False)  # grouped by identity
class _Write:
    """A one-statement write: its SQL and the row it binds, built in the writer thread.

    ``grouped`` writes (to ``attempts`` and ``nodes``) are grouped in a batch:
    each table's rows, in the order they were queued, go in one multi-row statement (one
    call into SQLite, so the writer thread gives up the GIL once, not once a row). Other
    writes (to ``runs``, which the other tables reference) keep their place in the batch.
    """

    sql: str
    """The statement for one row."""
    row: Callable[..., tuple[Any, ...]]
    """Builds the row from the call's arguments."""
    grouped: bool = False
    """Rows may be grouped: ``sql`` is ``... VALUES (?, ...) ...`` with one row."""

    def many(self, rows: int) -> str:
        """The statement for ``rows`` rows."""
        head, _, rest = self.sql.partition("VALUES ")
        end = rest.index(")") + 1
        return head + "VALUES " + ", ".join([rest[:end]] * rows) + rest[end:]


_MOST_ROWS_LOG2 = 8
"""Multi-row statements take 1, 2, 4, ... 256 rows: few distinct statements to prepare and
cache (a statement of many rows is large), one call into SQLite per up to 256 rows."""


def _chunks(rows: int, most: int) -> list[int]:
    """Sizes to write ``rows`` rows in, each a power of two no larger than ``most``."""
    sizes = [most] * (rows // most)
    rest = rows % most
    sizes += [1 << bit for bit in reversed(range(rest.bit_length())) if rest >> bit & 1]
    return sizes


_Op = Callable[..., Any]
"""Any other operation, called in the writer thread as ``op(connection, *args)``; a
barrier too. Those in ``_READ_ONLY`` only read; the others (``_finish_run``) also write."""


@dataclass(slots=True)
class _Call:
    """One queued store call: the operation and its arguments, then its outcome.

    It holds references only (no closure, no serialised copy): the record is serialised in
    the writer thread, while its caller, which must not change it meanwhile, waits.
    """

    op: _Write | _Op
    args: tuple[Any, ...]
    result: Any = None
    error: Exception | None = None


class _Batch:
    """Calls that will be committed together. Its first call's caller writes it."""

    __slots__ = ("calls", "turn", "written")

    def __init__(self) -> None:
        self.calls: list[_Call] = []
        self.turn = anyio.Event()  # set when the batch before it has been written
        self.written = anyio.Event()  # set once it has been committed (or has failed)


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
CREATE TABLE IF NOT EXISTS leases (
    run_id TEXT PRIMARY KEY, token TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    process_started TEXT, since REAL NOT NULL, expires_at REAL NOT NULL
);
"""


class StoreError(UserError):
    """The store file cannot be used (not SQLite, another application's, or too new)."""


class SQLiteStore(RunStore):
    """A :class:`RunStore` in one SQLite file.

    Open with ``await SQLiteStore.open(path)``; close with ``await store.aclose()``.
    """

    def __init__(
        self, path: Path, connection: sqlite3.Connection, *, max_queued: int = MAX_QUEUED
    ) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be at least 1, got {max_queued}")
        self.path = path
        self.max_queued = max_queued
        self._db = connection
        self._room = anyio.Semaphore(max_queued)  # a token per call waiting for a batch
        self._pending = _Batch()  # calls waiting for the batch being written
        self._writing: _Batch | None = None  # the batch in the worker thread, if any
        self._busy = False  # the last batch had several calls: calls come in groups
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path, *, max_queued: int = MAX_QUEUED) -> SQLiteStore:
        """Open (or create) the store at ``path``.

        Args:
            path: The store file.
            max_queued: How many calls may wait for the next batch (which is also the
                most a batch holds); further callers wait, before anything of theirs is
                queued, until the batch being written is done and the next one is taken.

        Raises:
            StoreError: If the file is not a store this version can use; it is not modified.
            ValueError: If ``max_queued`` is below 1.
        """
        if max_queued < 1:
            raise ValueError(f"max_queued must be at least 1, got {max_queued}")
        path = Path(path)
        connection = await anyio.to_thread.run_sync(_connect, path)
        return cls(path, connection, max_queued=max_queued)

    @property
    def queued(self) -> int:
        """Calls waiting for the next batch (never more than ``max_queued``)."""
        return self.max_queued - self._room.value

    @property
    def congested(self) -> bool:
        """Whether the queue is full: the next caller would wait before queueing."""
        return self._room.value == 0

    async def _call(self, op: _Write | _Op, *args: Any) -> Any:
        if self._closed:
            raise StoreError(f"run store {self.path} is closed")
        try:
            self._room.acquire_nowait()
        except anyio.WouldBlock:
            await self._room.acquire()  # back-pressure: wait before queueing anything
        call = _Call(op, args)
        batch = self._pending
        batch.calls.append(call)
        if len(batch.calls) == 1:
            # The first caller writes the batch, once the one before it is written. Shielded:
            # the others rely on it (a write in the worker thread cannot be stopped anyway).
            with anyio.CancelScope(shield=True):
                if self._writing is not None:
                    await batch.turn.wait()
                elif self._busy:  # let the callers already woken join before it is taken
                    await anyio.lowlevel.checkpoint()
                await self._write(batch)
        else:
            await batch.written.wait()
        if call.error is not None:
            raise call.error
        return call.result

    async def _write(self, batch: _Batch) -> None:
        self._writing, self._pending = batch, _Batch()
        self._busy = len(batch.calls) > 1
        for _ in batch.calls:  # taken: room for the next batch
            self._room.release()
        try:
            await anyio.to_thread.run_sync(self._commit, batch.calls)
        finally:
            self._writing = None
            batch.written.set()
            if self._pending.calls:
                self._pending.turn.set()

    def _commit(self, calls: list[_Call]) -> None:
        """Run ``calls`` in one transaction (worker thread); each one fails alone."""
        db = self._db
        try:
            with db:  # commits at the end, or rolls back if the batch itself fails
                # A batch that writes takes the write lock first (waiting out another
                # process's writes for up to busy_timeout). A deferred BEGIN would read a
                # snapshot first (finish_run reads the node rows) and then fail at once
                # with "database is locked" if another process wrote in between: SQLite
                # cannot upgrade a stale snapshot, and does not wait. Read-only batches
                # stay deferred, so a read-only file can still be inspected.
                writes = any(call.op not in _READ_ONLY for call in calls)
                db.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
                grouped: dict[_Write, list[_Call]] = {}
                for call in calls:
                    if isinstance(call.op, _Write) and call.op.grouped:
                        grouped.setdefault(call.op, []).append(call)
                        continue
                    for write, group in grouped.items():  # the writes queued before it
                        self._write_group(write, group)
                    grouped.clear()
                    self._run_one(call)
                for write, group in grouped.items():
                    self._write_group(write, group)
                if not db.in_transaction:  # SQLite rolled it back itself (disk full, ...)
                    raise sqlite3.OperationalError("the transaction was rolled back")
        except Exception as exc:  # noqa: BLE001  (the commit failed: nobody's write holds)
            error = self._error(exc)
            for call in calls:
                call.result, call.error = None, error

    def _write_group(self, write: _Write, calls: list[_Call]) -> None:
        """Write ``calls`` in multi-row statements.

        A statement that fails is undone by SQLite alone; its rows are then written one by
        one, so only the bad ones fail.
        """
        rows: list[tuple[Any, ...]] = []
        ready: list[_Call] = []
        for call in calls:
            try:
                rows.append(write.row(*call.args))
                ready.append(call)
            except Exception as exc:  # noqa: BLE001  (its caller gets it)
                call.error = exc
        if not rows:
            return
        start = 0
        for size in _chunks(len(rows), self._most_rows(len(rows[0]))):
            chunk, calls_of = rows[start : start + size], ready[start : start + size]
            start += size
            if size > 1:
                try:
                    self._db.execute(write.many(size), list(chain(*chunk)))
                    continue
                except sqlite3.DatabaseError:
                    pass  # nothing of it was written: find the rows that fail
            for call, row in zip(calls_of, chunk, strict=True):
                try:
                    self._db.execute(write.sql, row)
                except sqlite3.DatabaseError as exc:
                    call.error = self._error(exc)

    def _most_rows(self, columns: int) -> int:
        """The most rows one statement takes: a power of two, within SQLite's limit."""
        fits = self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // columns
        return 1 << min(_MOST_ROWS_LOG2, max(fits, 1).bit_length() - 1)

    def _run_one(self, call: _Call) -> None:
        try:
            if isinstance(call.op, _Write):
                self._db.execute(call.op.sql, call.op.row(*call.args))
            else:
                call.result = call.op(self._db, *call.args)
        except Exception as exc:  # noqa: BLE001  (its caller gets it)
            call.error = self._error(exc)

    def _error(self, exc: Exception) -> Exception:
        if isinstance(exc, sqlite3.DatabaseError):
            return StoreError(f"run store {self.path}: {exc}")
        return exc

    async def aclose(self) -> None:
        """Close the connection, after every call already queued has been written."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            while self._writing is not None or self._pending.calls:
                await (self._writing or self._pending).written.wait()
            await anyio.to_thread.run_sync(self._db.close)

    async def start_run(self, run_id: str, plan: Plan, started_at: datetime) -> None:
        """Record a new run, or mark a resumed one running again."""
        await self._call(_START_RUN, run_id, plan, started_at)

    async def start_planning(self, run_id: str, goal: str, started_at: datetime) -> None:
        """Record a run that plans its goal first (no plan yet), or mark one planning again."""
        await self._call(_START_PLANNING, run_id, goal, started_at)

    async def record_attempt(self, run_id: str, node_id: str, attempt: Attempt) -> None:
        """Insert or update an attempt (serialised when written: do not change it meanwhile)."""
        await self._call(_PUT_ATTEMPT, run_id, node_id, attempt)

    async def record_node(self, run_id: str, result: NodeResult) -> None:
        """Record a node's final result (serialised when written)."""
        await self._call(_PUT_NODE, run_id, result)

    async def finish_run(self, result: RunResult) -> None:
        """Record the final result."""
        await self._call(_finish_run, result)

    async def load_run(self, run_id: str) -> StoredRun:
        """Return a run (``KeyError`` naming it if unknown)."""
        run: StoredRun = await self._call(_load, run_id)
        return run

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        """Newest first."""
        runs: list[RunSummary] = await self._call(_list, limit)
        return runs

    # -- leases: each a write, under the write lock (see the module) ------------------

    async def acquire_lease(self, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
        """Take the lease if it is free, stale or ``owner``'s (``RunLeased`` otherwise)."""
        await self._call(_acquire_lease, run_id, owner, ttl_s)

    async def renew_lease(self, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
        """Extend ``owner``'s lease (``RunLeased`` if it is not ``owner``'s any more)."""
        await self._call(_renew_lease, run_id, owner, ttl_s)

    async def release_lease(self, run_id: str, owner: LeaseOwner) -> None:
        """Give up ``owner``'s lease, if it holds it."""
        await self._call(_RELEASE_LEASE, run_id, owner)


def _start_run_row(run_id: str, plan: Plan, started_at: datetime) -> tuple[Any, ...]:
    return (run_id, plan.goal, "running", plan.model_dump_json(), started_at.isoformat())


def _start_planning_row(run_id: str, goal: str, started_at: datetime) -> tuple[Any, ...]:
    return (run_id, goal, "planning", _NO_PLAN, started_at.isoformat())


_NO_PLAN = ""
"""The ``plan`` column of a run whose goal is being planned (the column is NOT NULL)."""


def _attempt_row(run_id: str, node_id: str, attempt: Attempt) -> tuple[Any, ...]:
    # The cost column is what the attempt counts as spent: while it runs, the worst case of
    # its calls in flight too (what ``runs`` sums; exact amounts are in the body).
    return (run_id, node_id, attempt.number, attempt.started_at.isoformat(),
            float(spent_on(attempt)), attempt.model_dump_json())  # fmt: skip


def _node_row(run_id: str, result: NodeResult) -> tuple[Any, ...]:
    return (run_id, result.id, result.status.value, result.model_dump_json())


_NOT_STARTED = frozenset({NodeStatus.SKIPPED, NodeStatus.NOT_RUN})


def _finish_run(db: sqlite3.Connection, result: RunResult) -> None:
    """Store the final result without its nodes: each node's row in ``nodes`` is its result.

    Nodes that ran have their rows already (``record_node``, before the run finished).
    Rows are written here for the nodes that did not start (skipped, not run), which no
    event recorded or whose row is an earlier process's, and for any node whose row is
    missing or holds another status (a write that failed): so the result rebuilt by
    :func:`_load` is the one the engine returned.
    """
    recorded = dict(
        db.execute("SELECT node_id, status FROM nodes WHERE run_id=?", (result.run_id,))
    )
    rows = [
        _node_row(result.run_id, node)
        for node in result.nodes
        if node.status in _NOT_STARTED or recorded.get(node.id) != node.status.value
    ]
    if rows:
        db.executemany(_PUT_NODE.sql, rows)
    db.execute(
        "UPDATE runs SET status=?, finished_at=?, result=? WHERE run_id=?",
        (result.status.value, result.finished_at.isoformat(),
         result.model_dump_json(exclude={"nodes"}), result.run_id),
    )  # fmt: skip


_START_RUN = _Write(
    "INSERT INTO runs (run_id, goal, status, plan, started_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT(run_id) DO UPDATE SET status='running', finished_at=NULL, result=NULL,"
    " plan=CASE WHEN runs.plan='' THEN excluded.plan ELSE runs.plan END",  # planned: its plan
    _start_run_row,
)
_START_PLANNING = _Write(
    "INSERT INTO runs (run_id, goal, status, plan, started_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT(run_id) DO UPDATE SET status='planning', finished_at=NULL, result=NULL",
    _start_planning_row,
)
_PUT_ATTEMPT = _Write(
    "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE"
    " SET cost_usd=excluded.cost_usd, body=excluded.body",
    _attempt_row,
    grouped=True,
)
_PUT_NODE = _Write(
    "INSERT INTO nodes VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE"
    " SET status=excluded.status, body=excluded.body",
    _node_row,
    grouped=True,
)


# -- leases ----------------------------------------------------------------------------


def _read_lease(db: sqlite3.Connection, run_id: str) -> Lease | None:
    row = db.execute(
        "SELECT token, host, pid, process_started, since, expires_at FROM leases WHERE run_id=?",
        (run_id,),
    ).fetchone()
    if row is None:
        return None
    token, host, pid, started, since, expires_at = row
    return Lease(
        run_id, LeaseOwner(host, pid, token, started),
        datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(expires_at, UTC),
    )  # fmt: skip


def _put_lease(db: sqlite3.Connection, lease: Lease) -> None:
    owner = lease.owner
    db.execute(
        "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?, ?)",
        (lease.run_id, owner.token, owner.host, owner.pid, owner.started,
         lease.since.timestamp(), lease.expires_at.timestamp()),
    )  # fmt: skip


def _acquire_lease(db: sqlite3.Connection, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
    """Read the holder and take the lease in one transaction (the batch's write lock)."""
    _put_lease(db, claim(_read_lease(db, run_id), run_id, owner, ttl_s))


def _renew_lease(db: sqlite3.Connection, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
    _put_lease(db, extend(_read_lease(db, run_id), run_id, owner, ttl_s))


_RELEASE_LEASE = _Write(
    "DELETE FROM leases WHERE run_id=? AND token=?",
    lambda run_id, owner: (run_id, owner.token),
)


def _add_leases(db: sqlite3.Connection) -> None:
    """Create ``leases`` in a file written before it existed (see the module)."""
    known = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='leases'")
    if known.fetchone() is not None:
        return
    leases = next(part for part in _SCHEMA.split(";") if "TABLE IF NOT EXISTS leases" in part)
    try:
        with db:
            db.execute(leases)
    except sqlite3.OperationalError as exc:
        if "readonly" not in str(exc):
            raise  # a read-only file stays readable; anything else is an error


def _connect(path: Path) -> sqlite3.Connection:
    existed = path.exists() and path.stat().st_size > 0
    version = _check_existing(path) if existed else SCHEMA_VERSION
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=5000")
        if not existed:
            _create(db)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        if existed:
            _add_leases(db)
        if version < SCHEMA_VERSION:  # what it holds reads as it is; what is added is newer
            with db:
                db.execute(
                    "UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),)
                )
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


def _check_existing(path: Path) -> int:
    """Read-only checks of a file that already exists (never writes to it); its version."""
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
    return version


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
    stored_plan = Plan.model_validate_json(plan) if plan != _NO_PLAN else None
    final = RunResult.model_validate_json(result) if result else None
    if final is not None and "nodes" not in final.model_fields_set:  # schema 2: in ``nodes``
        tasks = stored_plan.tasks if stored_plan is not None else []
        final.nodes = [nodes[task.id] for task in tasks if task.id in nodes]
    return StoredRun(
        summary=summary, plan=stored_plan, nodes=nodes, attempts=attempts, result=final
    )


def _list(db: sqlite3.Connection, limit: int) -> list[RunSummary]:
    rows = db.execute(
        "SELECT r.run_id, r.goal, r.status, r.started_at, r.finished_at,"
        " COALESCE((SELECT SUM(cost_usd) FROM attempts a WHERE a.run_id = r.run_id), 0)"
        " FROM runs r ORDER BY r.started_at DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [_summary(*row) for row in rows]


_READ_ONLY: frozenset[_Op] = frozenset({_load, _list})
"""The operations that do not write (their batches need no write lock)."""


def _summary(  # noqa: PLR0917  (one positional argument per column of the row)
    run_id: str,
    goal: str,
    status: str,
    started_at: str,
    finished_at: str | None,
    cost: Decimal | float,
) -> RunSummary:
    return RunSummary(
        run_id=run_id,
        goal=goal,
        status=status,
        cost_usd=cost if isinstance(cost, Decimal) else to_usd(round(cost, 12)),
        started_at=datetime.fromisoformat(started_at),
        finished_at=datetime.fromisoformat(finished_at) if finished_at else None,
    )


def _cost(attempts: dict[str, list[Attempt]]) -> Decimal:
    """Exact, from the records (the ``cost_usd`` column is a float, for listing)."""
    return sum((spent_on(a) for node in attempts.values() for a in node), ZERO_USD)
