"""Shared rate limits in PostgreSQL: one set of per-tier limits for every process, on every host.

:class:`PostgresRateLimits` is a :class:`~orchestrator.models.shared_ratelimit.RateLimitState`:
the buckets and pauses of :mod:`~orchestrator.models.shared_ratelimit`, kept in the tables
``ratelimit_buckets`` and ``ratelimit_pauses`` of a PostgreSQL run store's schema instead of
``<home>/ratelimits.db``, under the same rules. A call, in one transaction holding an
advisory lock on its scope (the tier, model and endpoint), refills the buckets to now, takes
what it needs (into debt: the debt is the queue) and commits; it then sleeps exactly as long
as the refill takes to pay its debt off, so every waiting call, in whichever process on
whichever host, has its turn fixed when it asks, and wakes once. A call cancelled before its
turn gives back what it took. Times are wall-clock seconds (``time.time``): the hosts must
agree on the time (as for leases).

Give it to the client: ``AnthropicClient(shared_rate_limits=PostgresRateLimits(url))``; the
client opens it and closes it. The CLI does so with ``--store postgresql://...``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from orchestrator.exceptions import UserError
from orchestrator.models.shared_ratelimit import SharedRateLimiter, refilled
from orchestrator.store.postgres_schema import (
    CREATE_LOCK,
    DEFAULT_SCHEMA,
    RATE_LIMIT_TABLES,
    check_schema_name,
    configure,
    connect_once,
    connection_params,
    ensure_schema,
    redact,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

__all__ = ["PostgresRateLimits"]

_Need = tuple[str, float, float]
_T = TypeVar("_T")
_SCOPE_LOCK = 0x726C
"""The advisory lock class of a scope's transactions; the object is the scope's hash."""


class PostgresRateLimits:
    """Per-tier request and token buckets, and pauses, in a PostgreSQL database.

    Args:
        url: The run store's database (as for :class:`~orchestrator.store.PostgresStore`).
        schema: The store's schema (its tables are created there if missing).
        clock: Wall-clock time in seconds, the same in every process (``time.time``).
        sleep: How to wait (``anyio.sleep``).
        max_connections: The most connections held open at once.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        max_connections: int = 4,
    ) -> None:
        self.url = redact(url)
        self.schema = check_schema_name(schema)
        self.clock = clock
        self.sleep = sleep
        self._conninfo = url
        self._max_connections = max_connections
        self._pool: AsyncConnectionPool[Any] | None = None
        self._database_error: type[Exception] = Exception

    def limiter(
        self, scope: str, requests_per_minute: int | None, tokens_per_minute: int | None
    ) -> SharedRateLimiter:
        """A limiter for ``scope`` (see :func:`~orchestrator.models.shared_ratelimit.scope_key`)."""
        return SharedRateLimiter(self, scope, requests_per_minute, tokens_per_minute)

    async def open(self) -> None:
        """Check the store's schema, add the rate-limit tables if missing, open the pool.

        Raises:
            UserError: The server cannot be reached, or the schema is not a run store.
        """
        if self._pool is not None:
            return
        try:
            import psycopg  # noqa: PLC0415  (the postgres extra, loaded when opened)
            from psycopg import sql  # noqa: PLC0415
            from psycopg_pool import AsyncConnectionPool  # noqa: PLC0415
        except ImportError:
            raise UserError(
                "shared rate limits in PostgreSQL need the postgres extra: "
                "pip install 'tiered-orchestrator[postgres]'"
            ) from None
        self._database_error = psycopg.Error
        params = connection_params(self._conninfo, self.url, 10.0)
        first = await connect_once(params, self.url)
        try:
            await ensure_schema(first, self.schema, self.url)
            async with first.transaction():  # a store made before the limits were kept here
                await first.execute("SELECT pg_advisory_xact_lock(%s, %s)", CREATE_LOCK)
                for statement in RATE_LIMIT_TABLES.split(";"):
                    await first.execute(
                        sql.SQL(statement).format(schema=sql.Identifier(self.schema))
                    )
        except psycopg.Error as exc:
            raise self._unusable(exc) from None
        finally:
            await first.close()
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            kwargs=params, min_size=1, max_size=self._max_connections, open=False,
            configure=partial(configure, schema=self.schema), name="orchestrator-ratelimits",
        )  # fmt: skip
        await pool.open()
        self._pool = pool

    async def aclose(self) -> None:
        """Close the pool (the client that was given this state does so)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            with anyio.CancelScope(shield=True):
                await pool.close()

    # -- RateLimitState -------------------------------------------------------------------

    async def take_turn(self, scope: str, needs: Sequence[_Need]) -> float:
        """Take ``needs`` now (into debt if need be); seconds until the turn comes."""

        async def take(db: AsyncConnection[Any]) -> float:
            now = self.clock()
            delay = await _paused_for(db, scope, now)
            for name, per_minute, amount in needs:
                level = await _level(db, scope, name, per_minute, now) - amount
                await _store(db, scope, name, level, now)
                delay = max(delay, -level * 60 / per_minute)
            return delay

        return await self._locked(scope, take)

    async def give_turn_back(self, scope: str, needs: Sequence[_Need]) -> None:
        """Return what a call took but never used (it was cancelled before its turn)."""

        async def give_back(db: AsyncConnection[Any]) -> None:
            now = self.clock()
            for name, per_minute, amount in needs:
                level = await _level(db, scope, name, per_minute, now) + amount
                await _store(db, scope, name, min(level, per_minute), now)

        await self._locked(scope, give_back)

    async def pause_left(self, scope: str) -> float:
        """Seconds left of the scope's ``retry-after`` pause (0 if none)."""
        async with self._connection() as db:
            return await _paused_for(db, scope, self.clock())

    async def hold_scope(self, scope: str, seconds: float) -> None:
        """Hold the scope for ``seconds`` from now; a shorter pause never shortens one."""
        async with self._connection() as db:
            await db.execute(
                "INSERT INTO ratelimit_pauses (scope, paused_until) VALUES (%s, %s)"
                " ON CONFLICT (scope) DO UPDATE SET paused_until ="
                " GREATEST(ratelimit_pauses.paused_until, excluded.paused_until)",
                (scope, self.clock() + seconds),
            )

    async def _locked(self, scope: str, op: Callable[[AsyncConnection[Any]], Awaitable[_T]]) -> _T:
        """``op`` in one transaction holding the scope's lock (shielded: it is short)."""
        with anyio.CancelScope(shield=True):
            async with self._connection() as db, db.transaction():
                await db.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_SCOPE_LOCK, scope)
                )
                result = await op(db)
        return result

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection; a database error is a :class:`UserError` naming the URL."""
        if self._pool is None:
            raise UserError(f"the shared rate limits in {self.url} are not open")
        try:
            async with self._pool.connection() as db:
                yield db
        except self._database_error as exc:
            raise self._unusable(exc) from None

    def _unusable(self, exc: BaseException) -> UserError:
        return UserError(f"cannot use the shared rate limits in {self.url}: {exc}")


async def _level(
    db: AsyncConnection[Any], scope: str, name: str, per_minute: float, now: float
) -> float:
    """The bucket's level refilled to ``now`` (full if new)."""
    cursor = await db.execute(
        "SELECT level, updated FROM ratelimit_buckets WHERE scope = %s AND name = %s",
        (scope, name),
    )
    row = await cursor.fetchone()
    return per_minute if row is None else refilled(float(row[0]), float(row[1]), per_minute, now)


async def _store(db: AsyncConnection[Any], scope: str, name: str, level: float, now: float) -> None:
    await db.execute(
        "INSERT INTO ratelimit_buckets (scope, name, level, updated) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (scope, name) DO UPDATE SET level = excluded.level,"
        " updated = excluded.updated",
        (scope, name, level, now),
    )


async def _paused_for(db: AsyncConnection[Any], scope: str, now: float) -> float:
    cursor = await db.execute(
        "SELECT paused_until FROM ratelimit_pauses WHERE scope = %s", (scope,)
    )
    row = await cursor.fetchone()
    return 0.0 if row is None else max(0.0, float(row[0]) - now)
