"""The SQLite store's plumbing: one connection, used off the event loop a batch at a time.

All database work runs in a worker thread (``anyio.to_thread``) on one connection, one
batch at a time, so the event loop never blocks on disk. Writes are group-committed: the
calls that queue up while a batch is being written go together in the next transaction,
and each caller returns only once its batch has committed (what a caller waits for, and
what it writes behind, is the listener's choice). Every write is one statement, which SQLite undoes
alone if it fails, so one failing call fails alone. A process killed at any point leaves
the file consistent (SQLite's journal) and at most loses the batch being written, whose
callers had not returned. A batch that writes takes the write lock first (``BEGIN
IMMEDIATE``), so what it reads is still so when it writes (a lease's holder, say).

A *fenced* call (``fence=(run_id, token)``) is made only while that token holds the run's
lease: in its batch, before its write, the lease is read (one indexed ``SELECT`` a run and
token per batch, read again after any call that is not a grouped write, since that may
change a lease), under the batch's write lock; a call whose lease is gone fails alone with
:class:`~orchestrator.exceptions.RunLeased`, and nothing of it is written.

Back-pressure: at most ``max_queued`` calls wait for the next batch; further callers wait
before anything of theirs is queued, and while the queue is full the store reports itself
``congested``, so that the engine starts no more nodes at once (each would only wait).
A queued call holds references, not a serialised copy (records are serialised in the
writer thread), and waits on its batch's event, not on a lock of its own: the callers of
a batch are released together, in one turn of the loop. Rows of one table in a batch go
in multi-row statements, so the writer thread calls into SQLite (and gives up the GIL) a
few times a batch rather than a few times a row.

:class:`BatchWriter` owns this queue; :class:`~orchestrator.store.sqlite.SQLiteStore` is
one, and queues the operations of :mod:`~orchestrator.store.sqlite_queries` on it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, ClassVar

import anyio

from orchestrator.exceptions import RunLeased
from orchestrator.store.sqlite_schema import StoreError

__all__ = ["GROUPED", "MAX_QUEUED", "BatchWriter", "Op", "Write"]

MAX_QUEUED = 1024
"""Default bound on store calls accepted but not yet committed (see ``SQLiteStore.open``)."""


@dataclass(frozen=True, slots=True, eq=False)  # grouped by identity
class Write:
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


Op = Callable[..., Any]
"""Any other operation, called in the writer thread as ``op(connection, *args)``; a
barrier too. Those in :attr:`BatchWriter.read_only` only read; the others also write."""


def GROUPED(*_: Any) -> None:
    """Marks a call made of several grouped writes (it is never called).

    The call's arguments are ``(write, args)`` pairs, each row grouped with the batch's
    others of its table: so a node's answer and result, queued as one call, go in the same
    batch and transaction, and do not split the batch's multi-row statements as a barrier
    (any other operation) would.
    """
    raise AssertionError("GROUPED marks a call's parts; it is never called")


@dataclass(slots=True)
class _Call:
    """One queued store call: the operation and its arguments, then its outcome.

    It holds references only (no closure, no serialised copy): the record is serialised in
    the writer thread, while its caller, which must not change it meanwhile, waits.
    """

    op: Write | Op
    args: tuple[Any, ...]
    fence: tuple[str, str] | None = None
    """``(run_id, lease token)``: made only while that token holds the run's lease."""
    result: Any = None
    error: Exception | None = None


class _Batch:
    """Calls that will be committed together. Its first call's caller writes it."""

    __slots__ = ("calls", "turn", "written")

    def __init__(self) -> None:
        self.calls: list[_Call] = []
        self.turn = anyio.Event()  # set when the batch before it has been written
        self.written = anyio.Event()  # set once it has been committed (or has failed)


class BatchWriter:
    """Store calls queued, batched and run in a worker thread on one connection.

    :meth:`_call` queues an operation (a :class:`Write`, or any :data:`Op`) and returns
    its result once its batch has committed; see the module.
    """

    read_only: ClassVar[frozenset[Op]] = frozenset()
    """The operations that only read: a batch of only those takes no write lock (so a
    read-only file can still be inspected). Every other operation counts as a write."""

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

    @property
    def queued(self) -> int:
        """Calls waiting for the next batch (never more than ``max_queued``)."""
        return self.max_queued - self._room.value

    @property
    def congested(self) -> bool:
        """Whether the queue is full: the next caller would wait before queueing."""
        return self._room.value == 0

    async def _call(self, op: Write | Op, *args: Any, fence: tuple[str, str] | None = None) -> Any:
        if self._closed:
            raise StoreError(f"run store {self.path} is closed")
        try:
            self._room.acquire_nowait()
        except anyio.WouldBlock:
            await self._room.acquire()  # back-pressure: wait before queueing anything
        call = _Call(op, args, fence)
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
                writes = any(call.op not in self.read_only for call in calls)
                db.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
                grouped: dict[Write, list[tuple[_Call, tuple[Any, ...]]]] = {}
                fences: dict[tuple[str, str], bool] = {}  # held? as read in this batch
                for call in calls:
                    if call.fence is not None and not self._holds(call.fence, fences):
                        call.error = RunLeased(call.fence[0])
                        continue
                    if call.op is GROUPED:  # several grouped writes, in one call
                        for write, args in call.args:
                            grouped.setdefault(write, []).append((call, args))
                        continue
                    if isinstance(call.op, Write) and call.op.grouped:
                        grouped.setdefault(call.op, []).append((call, call.args))
                        continue
                    for write, group in grouped.items():  # the writes queued before it
                        self._write_group(write, group)
                    grouped.clear()
                    self._run_one(call)
                    fences.clear()  # it may have changed a lease
                for write, group in grouped.items():
                    self._write_group(write, group)
                if not db.in_transaction:  # SQLite rolled it back itself (disk full, ...)
                    raise sqlite3.OperationalError("the transaction was rolled back")
        except Exception as exc:  # noqa: BLE001  (the commit failed: nobody's write holds)
            error = self._error(exc)
            for call in calls:
                call.result, call.error = None, error

    def _holds(self, fence: tuple[str, str], known: dict[tuple[str, str], bool]) -> bool:
        """Whether the token of ``fence`` holds its run's lease (read once into ``known``)."""
        held = known.get(fence)
        if held is None:
            run_id, token = fence
            row = self._db.execute("SELECT token FROM leases WHERE run_id=?", (run_id,)).fetchone()
            held = known[fence] = row is not None and row[0] == token
        return held

    def _write_group(self, write: Write, calls: list[tuple[_Call, tuple[Any, ...]]]) -> None:
        """Write the rows of ``calls`` (each call with its row's arguments), many a statement.

        A statement that fails is undone by SQLite alone; its rows are then written one by
        one, so only the bad ones fail (their calls get the error).
        """
        rows: list[tuple[Any, ...]] = []
        ready: list[_Call] = []
        for call, args in calls:
            try:
                rows.append(write.row(*args))
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
            if isinstance(call.op, Write):
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
