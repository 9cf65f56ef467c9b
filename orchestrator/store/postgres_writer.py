"""The PostgreSQL store's group commit: attempts and node results written in batches.

Most of what a run writes is attempts (when each starts, before each of its calls, when it
ends) and node results, from many nodes at once. Written one call at a time, each would be
its own transaction on its own pooled connection, and the store's cost would be psycopg's
and the server's work per statement (a 500-node fan-out spent about 1.2 ms a node on it,
against 0.2 ms for SQLite's group commit). So :class:`GroupWriter` does what the SQLite
store's writer does: the calls that queue up while a batch is being written go together
in the next one, in one transaction, one multi-row upsert per table (1, 2, 4, ... 256 rows
a statement: few distinct statements, which the server keeps prepared). Each caller
returns once its batch has committed. A row that appears twice in a batch (an attempt
recorded when it starts and again before its call) is written once, as it was last given.

If a batch fails, its calls are written again one by one, each in its own transaction, so
only the calls whose rows fail (a foreign key, say) fail. The first caller of a batch
writes it, shielded from cancellation (the others rely on it); a caller cancelled after its
call was queued still has it written. Other calls of the store (runs, leases, reads) do
not wait for these batches: they run on the pool beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import chain
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

__all__ = ["GroupWriter", "Table", "chunks"]

MOST_ROWS = 256
"""The most rows one statement writes."""


@dataclass(frozen=True, slots=True)
class Table:
    """A table written in groups: its upsert for one row, and how many columns key a row."""

    name: str
    columns: tuple[str, ...]
    key: int
    update: tuple[str, ...]

    def upsert(self, rows: int) -> str:
        """The statement writing ``rows`` rows."""
        return _upsert_statement(self, rows)


@cache
def _upsert_statement(table: Table, rows: int) -> str:
    one = "(" + ", ".join(["%s"] * len(table.columns)) + ")"
    keys = ", ".join(table.columns[: table.key])
    sets = ", ".join(f"{column} = excluded.{column}" for column in table.update)
    return (
        f"INSERT INTO {table.name} ({', '.join(table.columns)}) VALUES "  # noqa: S608  (constants)
        + ", ".join([one] * rows)
        + f" ON CONFLICT ({keys}) DO UPDATE SET {sets}"
    )


def chunks(rows: int, most: int = MOST_ROWS) -> list[int]:
    """Sizes to write ``rows`` rows in, each a power of two no larger than ``most``."""
    sizes = [most] * (rows // most)
    rest = rows % most
    sizes += [1 << bit for bit in reversed(range(rest.bit_length())) if rest >> bit & 1]
    return sizes


Rows = Sequence[tuple[Table, tuple[Any, ...]]]
"""One call's rows, each with its table, in the order given."""


@dataclass(slots=True)
class _Call:
    rows: Rows
    error: Exception | None = None


@dataclass(slots=True)
class _Batch:
    calls: list[_Call] = field(default_factory=list)
    turn: anyio.Event = field(default_factory=anyio.Event)  # the batch before it is written
    written: anyio.Event = field(default_factory=anyio.Event)


class GroupWriter:
    """Grouped writes on a pool, one batch at a time (see the module).

    Args:
        pool: The store's connection pool.
        database_error: The driver's base error (``psycopg.Error``).
        wrap: What a caller gets for a database error of its call.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        database_error: type[Exception],
        wrap: Callable[[Exception], Exception],
    ) -> None:
        self._pool = pool
        self._database_error = database_error
        self._wrap = wrap
        self._pending = _Batch()
        self._writing: _Batch | None = None
        self._busy = False  # the last batch had several calls: calls come in groups

    async def write(self, rows: Rows) -> None:
        """Write ``rows`` with the next batch; return once it has committed."""
        call = _Call(rows)
        batch = self._pending
        batch.calls.append(call)
        if len(batch.calls) == 1:
            with anyio.CancelScope(shield=True):  # the others rely on it
                if self._writing is not None:
                    await batch.turn.wait()
                elif self._busy:  # let the callers already woken join before it is taken
                    await anyio.lowlevel.checkpoint()
                await self._flush(batch)
        else:
            await batch.written.wait()
        if call.error is not None:
            raise call.error

    async def _flush(self, batch: _Batch) -> None:
        self._writing, self._pending = batch, _Batch()
        self._busy = len(batch.calls) > 1
        try:
            await self._commit(batch.calls)
        finally:
            self._writing = None
            batch.written.set()
            if self._pending.calls:
                self._pending.turn.set()

    async def _commit(self, calls: list[_Call]) -> None:
        try:
            await self._transaction([row for call in calls for row in call.rows])
        except self._database_error:
            for call in calls:  # nothing of the batch was written: each call alone
                await self._alone(call)
        except Exception as exc:  # noqa: BLE001  (every caller of the batch gets it)
            for call in calls:
                call.error = exc

    async def _alone(self, call: _Call) -> None:
        try:
            await self._transaction(call.rows)
        except self._database_error as exc:
            call.error = self._wrap(exc)
        except Exception as exc:  # noqa: BLE001  (its caller gets it)
            call.error = exc

    async def _transaction(self, rows: Rows) -> None:
        """``rows`` in one transaction.

        One statement runs alone (autocommit: one round trip); several are pipelined, sent
        together with their ``BEGIN`` and ``COMMIT``.
        """
        latest: dict[Table, dict[tuple[Any, ...], tuple[Any, ...]]] = {}
        for table, row in rows:  # a key given twice is written once, as last given
            by_key = latest.setdefault(table, {})
            by_key.pop(row[: table.key], None)
            by_key[row[: table.key]] = row
        statements = [
            statement for table, by_key in latest.items()
            for statement in _statements(table, list(by_key.values()))
        ]  # fmt: skip
        async with self._pool.connection() as db:
            if len(statements) == 1:
                await db.execute(*statements[0])
                return
            async with db.pipeline(), db.transaction():
                for statement in statements:
                    await db.execute(*statement)


def _statements(table: Table, rows: list[tuple[Any, ...]]) -> list[tuple[str, list[Any]]]:
    """Multi-row upserts of ``rows``, in chunks of powers of two."""
    statements = []
    start = 0
    for size in chunks(len(rows)):
        chunk = rows[start : start + size]
        start += size
        statements.append((table.upsert(size), list(chain.from_iterable(chunk))))
    return statements
