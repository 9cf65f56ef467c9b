"""Rate limits shared by every process that uses one directory, through a small SQLite file.

Two CLI processes on one ``ORCHESTRATOR_HOME`` call the same endpoints with the same keys,
so they must share each tier's request and token budgets; no server is needed for that,
only a file both can lock. ``<directory>/ratelimits.db`` holds one row per bucket, keyed
by a *scope* (tier name, model and endpoint: two endpoints, or two homes, never share) and
the limit's name, plus each scope's ``paused_until`` from a server's ``retry-after``.

How a call waits, without polling: in one ``BEGIN IMMEDIATE`` transaction it refills the
buckets to now, takes what it needs, and commits. A bucket may go below zero: that debt is
the queue, and the call sleeps exactly as long as the refill takes to pay it off. So every
waiting call, in whichever process, has its turn fixed when it asks (first come, first
served) and wakes once, when its turn comes; it then only re-reads the pause, in case a
``retry-after`` arrived while it slept. A call cancelled before its turn gives back what it
took.

Times are wall-clock seconds (``time.time``), the one clock every process shares; a clock
that steps back never refills a bucket. Every file operation runs in a worker thread
(``anyio.to_thread``), never on the event loop.

The same state can live in PostgreSQL instead, shared by processes on several machines
(``--store postgresql://...``): :class:`~orchestrator.store.postgres_ratelimit.PostgresRateLimits`
keeps the same rows under the same rules. A :class:`SharedRateLimiter` needs only a
:class:`RateLimitState`, which both are.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio
import anyio.to_thread

from orchestrator.exceptions import UserError

__all__ = [
    "FILE_NAME",
    "RateLimitFile",
    "RateLimitState",
    "SharedRateLimiter",
    "refilled",
    "scope_key",
]

FILE_NAME = "ratelimits.db"
"""The file, inside the directory given to :class:`RateLimitFile`."""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS buckets (scope TEXT NOT NULL, name TEXT NOT NULL, "
    "level REAL NOT NULL, updated REAL NOT NULL, PRIMARY KEY (scope, name))",
    "CREATE TABLE IF NOT EXISTS pauses (scope TEXT PRIMARY KEY, paused_until REAL NOT NULL)",
)

_Need = tuple[str, float, float]
"""A bucket's name, its limit per minute, and how much of it a call takes."""


class RateLimitState(Protocol):
    """Where shared buckets and pauses live: :class:`RateLimitFile`, or PostgreSQL.

    Each operation is one transaction that every process sharing the state sees whole.
    """

    sleep: Callable[[float], Awaitable[None]]
    """How a waiting call waits."""

    def limiter(
        self, scope: str, requests_per_minute: int | None, tokens_per_minute: int | None
    ) -> SharedRateLimiter:
        """A limiter for ``scope`` (see :func:`scope_key`) with these limits."""

    async def open(self) -> None:
        """Make the state ready (idempotent); a :class:`UserError` if it cannot be used."""

    async def take_turn(self, scope: str, needs: Sequence[_Need]) -> float:
        """Take ``needs`` now (into debt if need be); seconds until the turn comes."""

    async def give_turn_back(self, scope: str, needs: Sequence[_Need]) -> None:
        """Return what a call took but never used."""

    async def pause_left(self, scope: str) -> float:
        """Seconds left of the scope's ``retry-after`` pause (0 if none)."""

    async def hold_scope(self, scope: str, seconds: float) -> None:
        """Hold the scope for ``seconds`` from now; a shorter pause never shortens one."""

    async def aclose(self) -> None:
        """Release what the state holds open (a client closes it when it closes)."""


def scope_key(tier: str, model: str, endpoint: str) -> str:
    """The key of one tier's limits: its name, model and endpoint (unambiguous JSON)."""
    return json.dumps([tier, model, endpoint])


class RateLimitFile:
    """The shared bucket file of one directory; hands out a limiter per scope.

    Args:
        directory: Where ``ratelimits.db`` lives (the home directory); created if missing.
        clock: Wall-clock time in seconds, the same in every process (``time.time``).
        sleep: How to wait (``anyio.sleep``).
        lock_timeout_s: How long a transaction waits for another process's lock.
    """

    def __init__(
        self,
        directory: Path,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        lock_timeout_s: float = 30.0,
    ) -> None:
        self.path = Path(directory) / FILE_NAME
        self.clock = clock
        self.sleep = sleep
        self.lock_timeout_s = lock_timeout_s
        self._ready = False

    def limiter(
        self, scope: str, requests_per_minute: int | None, tokens_per_minute: int | None
    ) -> SharedRateLimiter:
        """A limiter for ``scope`` (see :func:`scope_key`) with these limits."""
        return SharedRateLimiter(self, scope, requests_per_minute, tokens_per_minute)

    async def open(self) -> None:
        """Create the directory and the file's tables if needed (idempotent).

        Raises:
            UserError: If the file cannot be created or is not a rate-limit database.
        """
        if not self._ready:
            await anyio.to_thread.run_sync(self._create)
            self._ready = True

    # -- RateLimitState: each operation in a worker thread ------------------------------

    async def take_turn(self, scope: str, needs: Sequence[_Need]) -> float:
        """:meth:`take`, off the event loop."""
        return await anyio.to_thread.run_sync(self.take, scope, needs)

    async def give_turn_back(self, scope: str, needs: Sequence[_Need]) -> None:
        """:meth:`give_back`, off the event loop."""
        await anyio.to_thread.run_sync(self.give_back, scope, needs)

    async def pause_left(self, scope: str) -> float:
        """:meth:`paused_for`, off the event loop."""
        return await anyio.to_thread.run_sync(self.paused_for, scope)

    async def hold_scope(self, scope: str, seconds: float) -> None:
        """:meth:`pause`, off the event loop."""
        await anyio.to_thread.run_sync(self.pause, scope, seconds)

    async def aclose(self) -> None:
        """Nothing to release: every operation opens and closes its own connection."""

    # -- in a worker thread -----------------------------------------------------------

    def _create(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unusable(exc) from None
        db = self._connect()
        try:
            db.execute("PRAGMA journal_mode = WAL")  # writers never block the pause readers
        except sqlite3.OperationalError as exc:
            # Busy at once, without waiting: another process is creating the file (its
            # first transaction is open). WAL only speeds things up; a later opener sets it.
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise self._unusable(exc) from None
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        finally:
            db.close()
        with self._transaction() as db:  # waits for the other process's lock
            for statement in _SCHEMA:
                db.execute(statement)

    def take(self, scope: str, needs: Sequence[_Need]) -> float:
        """Take ``needs`` now (into debt if need be); return seconds until the turn comes."""
        with self._transaction() as db:
            now = self.clock()
            delay = _paused_for(db, scope, now)
            for name, per_minute, amount in needs:
                level = _level(db, scope, name, per_minute, now) - amount
                _store(db, scope, name, level, now)
                delay = max(delay, -level * 60 / per_minute)
            return delay

    def give_back(self, scope: str, needs: Sequence[_Need]) -> None:
        """Return what a call took but never used (it was cancelled before its turn)."""
        with self._transaction() as db:
            now = self.clock()
            for name, per_minute, amount in needs:
                level = _level(db, scope, name, per_minute, now) + amount
                _store(db, scope, name, min(level, per_minute), now)

    def paused_for(self, scope: str) -> float:
        """Seconds left of the scope's ``retry-after`` pause (0 if none)."""
        with self._transaction(write=False) as db:
            return _paused_for(db, scope, self.clock())

    def pause(self, scope: str, seconds: float) -> None:
        """Hold the scope for ``seconds`` from now; a shorter pause never shortens one."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO pauses (scope, paused_until) VALUES (?, ?) ON CONFLICT (scope) "
                "DO UPDATE SET paused_until = max(paused_until, excluded.paused_until)",
                (scope, self.clock() + seconds),
            )

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One connection and transaction; ``BEGIN IMMEDIATE`` takes the write lock first."""
        db = self._connect()
        try:
            db.execute("PRAGMA synchronous = NORMAL")  # the state is cheap to lose, not to corrupt
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.rollback()
                raise
            db.commit()
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        try:
            return sqlite3.connect(self.path, timeout=self.lock_timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None

    def _unusable(self, exc: Exception) -> UserError:
        return UserError(
            f"cannot use the shared rate-limit file {self.path}: {exc} (it holds only "
            "rate-limit state and may be deleted; or choose another home with --home)"
        )


def _level(db: sqlite3.Connection, scope: str, name: str, per_minute: float, now: float) -> float:
    """The bucket's level refilled to ``now`` (full if new)."""
    row = db.execute(
        "SELECT level, updated FROM buckets WHERE scope = ? AND name = ?", (scope, name)
    ).fetchone()
    if row is None:
        return per_minute
    return refilled(float(row[0]), float(row[1]), per_minute, now)


def refilled(level: float, updated: float, per_minute: float, now: float) -> float:
    """A bucket's level at ``now``, refilled since ``updated`` (a clock stepping back: none)."""
    return min(per_minute, level + max(0.0, now - updated) * per_minute / 60)


def _store(db: sqlite3.Connection, scope: str, name: str, level: float, now: float) -> None:
    db.execute(
        "INSERT INTO buckets (scope, name, level, updated) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (scope, name) DO UPDATE SET level = excluded.level, "
        "updated = excluded.updated",
        (scope, name, level, now),
    )


def _paused_for(db: sqlite3.Connection, scope: str, now: float) -> float:
    row = db.execute("SELECT paused_until FROM pauses WHERE scope = ?", (scope,)).fetchone()
    return 0.0 if row is None else max(0.0, float(row[0]) - now)


@dataclass
class SharedRateLimiter:
    """One tier's request and token buckets, and its pause, kept in a :class:`RateLimitState`.

    A :class:`~orchestrator.models.ratelimit.Limiter`, like the in-process
    :class:`~orchestrator.models.ratelimit.RateLimiter`, but shared by every process whose
    limiter has the same file and scope.

    Args:
        file: The shared state (a :class:`RateLimitFile`, or PostgreSQL).
        scope: The tier's key (:func:`scope_key`).
        requests_per_minute: Most requests per minute; ``None`` for no limit.
        tokens_per_minute: Most input tokens per minute; ``None`` for no limit.
    """

    file: RateLimitState
    scope: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    waits: int = field(default=0, init=False)
    """How many times a call had to wait (for reports)."""

    def _needs(self, tokens: int) -> list[_Need]:
        limits = (
            ("requests", self.requests_per_minute, 1),
            ("tokens", self.tokens_per_minute, tokens),
        )
        # a call larger than a minute's worth still runs (after a full minute's refill)
        return [(name, float(limit), float(min(n, limit))) for name, limit, n in limits if limit]

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of ``tokens`` input tokens may be sent, then take it."""
        await self.file.open()
        needs = self._needs(tokens)
        delay = await self.file.take_turn(self.scope, needs)
        if delay <= 0:
            return
        self.waits += 1
        try:
            while delay > 0:
                await self.file.sleep(delay)
                delay = await self.file.pause_left(self.scope)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.file.give_turn_back(self.scope, needs)
            raise

    async def hold(self, seconds: float) -> None:
        """Hold every call on this scope, in every process, for ``seconds``."""
        await self.file.open()
        await self.file.hold_scope(self.scope, seconds)
