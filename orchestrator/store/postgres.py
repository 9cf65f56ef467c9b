"""The PostgreSQL run store: runs shared by every process, on every host, that reaches it.

:class:`PostgresStore` is a :class:`~orchestrator.store.base.RunStore` in a PostgreSQL
database (psycopg 3, async, with its connection pool), for several drivers on several
machines that list, show and resume the same runs; the SQLite store stays the embedded
default. It passes the same contract suite (``tests/test_store.py``). In three parts:

- :mod:`~orchestrator.store.postgres_schema`: the database: the store's own schema, its
  marker and version, the checks before anything is written, creating it whole;
- :mod:`~orchestrator.store.postgres_queries`: what each call reads and writes;
- :mod:`~orchestrator.store.postgres_writer`: attempts and node results, group-committed;
- this module: the pool, and each interface method as one query on a pooled connection.

Every call runs on the event loop (psycopg's async driver: no worker thread), on a
connection of the pool (``max_connections``, opened as they are needed). Attempts and node
results, most of what a run writes, are group-committed
(:mod:`~orchestrator.store.postgres_writer`): those that queue up while a batch is being
written go together in the next transaction. Writes are shielded from cancellation once a
call has room, like the SQLite store's queued calls: a caller cancelled after that still
has its write made. At most ``max_queued`` calls are in flight at once (queued, waiting for
a connection or running); further callers wait before anything of theirs starts, and
meanwhile the store reports itself ``congested``, so the engine starts no more nodes at
once.

psycopg runs on asyncio (anyio's default backend), not on trio. It is imported when a
store opens: ``pip install 'tiered-orchestrator[postgres]'``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import anyio

from orchestrator.plan import Plan
from orchestrator.results import Attempt, NodeResult, RunResult
from orchestrator.store import postgres_queries as q
from orchestrator.store.base import RunStore, RunSummary, StoredRun
from orchestrator.store.lease import LeaseOwner
from orchestrator.store.postgres_schema import (
    DEFAULT_SCHEMA,
    check_schema_name,
    configure,
    connect_once,
    connection_params,
    ensure_schema,
    redact,
    unreachable,
)
from orchestrator.store.postgres_writer import Fence, GroupWriter, Rows
from orchestrator.store.sqlite_schema import StoreError
from orchestrator.store.sqlite_writer import MAX_QUEUED

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

__all__ = ["PostgresStore"]

_P = ParamSpec("_P")
_T = TypeVar("_T")

MAX_CONNECTIONS = 8
"""Default size of the connection pool of one store."""
EXTRA_HELP = (
    "the PostgreSQL store needs the postgres extra: pip install 'tiered-orchestrator[postgres]'"
)


class PostgresStore(RunStore):
    """A :class:`RunStore` in a PostgreSQL database.

    Open with ``await PostgresStore.open("postgresql://user@host/db")``; close with
    ``await store.aclose()``.

    Attributes:
        url: The URL as it may be shown (its password replaced by ``***``).
        schema: The PostgreSQL schema holding the store's tables.
    """

    def __init__(
        self, pool: AsyncConnectionPool[Any], url: str, schema: str, *, max_queued: int
    ) -> None:
        import psycopg  # noqa: PLC0415  (loaded with the pool)

        self.url = url
        self.schema = schema
        self.max_queued = max_queued
        self._pool = pool
        self._room = anyio.Semaphore(max_queued)
        self._database_error = psycopg.Error
        self._closed = False
        self._grouped = GroupWriter(pool, psycopg.Error, self._store_error)

    def _store_error(self, exc: Exception) -> StoreError:
        return StoreError(f"run store {self.url}: {exc}")

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        max_connections: int = MAX_CONNECTIONS,
        max_queued: int = MAX_QUEUED,
        connect_timeout_s: float = 10.0,
    ) -> PostgresStore:
        """Open (or create) the store in the database ``url`` names.

        Args:
            url: A PostgreSQL URL (``postgresql://user:password@host:port/dbname``) or a
                libpq connection string.
            schema: The PostgreSQL schema of the store's tables (created if missing).
            max_connections: The most connections the store holds open at once.
            max_queued: The most calls in flight at once (see the module).
            connect_timeout_s: How long to wait for the server (unless ``url`` says).

        Raises:
            StoreError: The URL is not one, the server cannot be reached or refuses the
                user, the schema is another application's or a newer store's, or the
                ``postgres`` extra is not installed; the message never holds the password.
            ValueError: ``schema`` is not a plain identifier, or a bound is below 1.
        """
        check_schema_name(schema)
        if max_queued < 1 or max_connections < 1:
            raise ValueError(
                f"max_queued and max_connections must be at least 1, got {max_queued} "
                f"and {max_connections}"
            )
        try:
            from psycopg_pool import AsyncConnectionPool, PoolTimeout  # noqa: PLC0415
        except ImportError:
            raise StoreError(EXTRA_HELP) from None
        shown = redact(url)
        params = connection_params(url, shown, connect_timeout_s)
        first = await connect_once(params, shown)
        try:
            await ensure_schema(first, schema, shown)
        finally:
            await first.close()
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            kwargs=params, min_size=1, max_size=max_connections, open=False,
            configure=partial(configure, schema=schema), name="orchestrator-store",
        )  # fmt: skip
        try:
            await pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout as exc:
            await pool.close()
            raise unreachable(shown, exc, params.get("password")) from None
        return cls(pool, shown, schema, max_queued=max_queued)

    @property
    def congested(self) -> bool:
        """Whether ``max_queued`` calls are in flight: the next caller would wait."""
        return self._room.value == 0

    async def _call(
        self,
        op: Callable[Concatenate[AsyncConnection[Any], _P], Awaitable[_T]],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Run ``op`` on a pooled connection; a database failure is a :class:`StoreError`."""
        if self._closed:
            raise StoreError(f"run store {self.url} is closed")
        await self._room.acquire()  # back-pressure: wait before anything of this call starts
        try:
            with anyio.CancelScope(shield=op not in _READS):
                async with self._pool.connection() as db:
                    result = await op(db, *args, **kwargs)
        except self._database_error as exc:
            raise self._store_error(exc) from None
        finally:
            self._room.release()
        return result

    async def _write_grouped(self, rows: Rows, fence: Fence | None = None) -> None:
        """Queue attempt and node rows for the next group commit; wait until it is done."""
        if self._closed:
            raise StoreError(f"run store {self.url} is closed")
        await self._room.acquire()
        try:
            await self._grouped.write(rows, fence)
        finally:
            self._room.release()

    async def start_run(
        self,
        run_id: str,
        plan: Plan,
        started_at: datetime,
        *,
        budget_usd: Decimal | None = None,
        lease: LeaseOwner | None = None,
    ) -> None:
        """Record a new run, or mark a resumed one running again (with ``budget_usd``)."""
        await self._call(q.start_run, run_id, plan, started_at, budget_usd, lease)

    async def revise_plan(
        self, run_id: str, plan: Plan, *, lease: LeaseOwner | None = None
    ) -> None:
        """Replace the run's plan with its revision (``replan``)."""
        await self._call(q.revise_plan, run_id, plan, lease)

    async def start_planning(
        self,
        run_id: str,
        goal: str,
        started_at: datetime,
        *,
        budget_usd: Decimal | None = None,
        lease: LeaseOwner | None = None,
    ) -> None:
        """Record a run that plans its goal first (no plan yet), or mark one planning again."""
        await self._call(q.start_planning, run_id, goal, started_at, budget_usd, lease)

    async def record_attempt(
        self, run_id: str, node_id: str, attempt: Attempt, *, lease: LeaseOwner | None = None
    ) -> None:
        """Insert or update an attempt (group-committed)."""
        rows: Rows = [(q.ATTEMPTS, q.attempt_row(run_id, node_id, attempt))]
        await self._write_grouped(rows, _fence(run_id, lease))

    async def record_node(
        self, run_id: str, result: NodeResult, *, lease: LeaseOwner | None = None
    ) -> None:
        """Record a node's final result (group-committed)."""
        await self._write_grouped([(q.NODES, q.node_row(run_id, result))], _fence(run_id, lease))

    async def record_many(
        self,
        run_id: str,
        attempts: Sequence[tuple[str, Attempt]] = (),
        nodes: Sequence[NodeResult] = (),
        *,
        lease: LeaseOwner | None = None,
    ) -> None:
        """Record attempts and node results in one transaction (with others' if grouped)."""
        rows: Rows = [
            *((q.ATTEMPTS, q.attempt_row(run_id, *item)) for item in attempts),
            *((q.NODES, q.node_row(run_id, result)) for result in nodes),
        ]
        if rows:
            await self._write_grouped(rows, _fence(run_id, lease))

    async def finish_run(self, result: RunResult, *, lease: LeaseOwner | None = None) -> None:
        """Record the final result."""
        await self._call(q.write_result, result, lease)

    async def load_run(self, run_id: str) -> StoredRun:
        """Return a run (``KeyError`` naming it if unknown)."""
        return await self._call(q.read_run, run_id)

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        """Newest first."""
        return await self._call(q.list_summaries, limit)

    # -- leases: each one locked transaction (see postgres_queries) ---------------------

    async def acquire_lease(self, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
        """Take the lease if it is free, stale or ``owner``'s (``RunLeased`` otherwise)."""
        await self._call(q.take_lease, run_id, owner, ttl_s)

    async def renew_lease(self, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
        """Extend ``owner``'s lease (``RunLeased`` if it is not ``owner``'s any more)."""
        await self._call(q.extend_lease, run_id, owner, ttl_s)

    async def release_lease(self, run_id: str, owner: LeaseOwner) -> None:
        """Give up ``owner``'s lease, if it holds it."""
        await self._call(q.release_lease, run_id, owner)

    async def aclose(self) -> None:
        """Close the pool; calls in flight finish first, later ones fail."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self._pool.close()


def _fence(run_id: str, lease: LeaseOwner | None) -> Fence | None:
    """A grouped write's fence: written only while ``lease`` holds the run's lease."""
    return None if lease is None else (run_id, lease.token)


_READS: frozenset[Callable[..., Any]] = frozenset({q.read_run, q.list_summaries})
"""The calls that only read: not shielded, a cancelled reader stops at once."""
