"""The SQLite run store: one file, WAL mode, every write off the event loop.

:class:`SQLiteStore` is a :class:`~orchestrator.store.base.RunStore` in one SQLite file,
in three parts, one module each:

- :mod:`~orchestrator.store.sqlite_schema`: the file: its tables, marker and schema
  version, the read-only checks before anything is written, creating a new store in one
  transaction, and opening it in WAL mode.
- :mod:`~orchestrator.store.sqlite_writer`: the plumbing: every call queued, group-committed
  in batches on one connection in a worker thread, with back-pressure (``congested``).
- :mod:`~orchestrator.store.sqlite_queries`: what each call reads and writes.

This module puts them together: each method of the interface queues one query.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import anyio

from orchestrator.plan import Plan
from orchestrator.results import Attempt, NodeResult, RunResult
from orchestrator.store.base import RunStore, RunSummary, StoredRun
from orchestrator.store.lease import LeaseOwner
from orchestrator.store.sqlite_queries import (
    PUT_ATTEMPT,
    PUT_NODE,
    READ_ONLY,
    RELEASE_LEASE,
    REVISE_PLAN,
    START_PLANNING,
    START_RUN,
    extend_lease,
    read_run,
    read_summaries,
    take_lease,
    write_result,
)
from orchestrator.store.sqlite_schema import SCHEMA_VERSION, StoreError, connect
from orchestrator.store.sqlite_writer import GROUPED, MAX_QUEUED, BatchWriter, Op, Write

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "StoreError"]


def _fence(run_id: str, lease: LeaseOwner | None) -> tuple[str, str] | None:
    """A call's fence: made only while ``lease`` holds the run's lease (see sqlite_writer)."""
    return None if lease is None else (run_id, lease.token)


class SQLiteStore(BatchWriter, RunStore):
    """A :class:`RunStore` in one SQLite file.

    Open with ``await SQLiteStore.open(path)``; close with ``await store.aclose()``.
    """

    read_only: ClassVar[frozenset[Op]] = READ_ONLY

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
        connection = await anyio.to_thread.run_sync(connect, path)
        return cls(path, connection, max_queued=max_queued)

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
        await self._call(
            START_RUN, run_id, plan, started_at, budget_usd, fence=_fence(run_id, lease)
        )

    async def revise_plan(
        self, run_id: str, plan: Plan, *, lease: LeaseOwner | None = None
    ) -> None:
        """Replace the run's plan with its revision (``replan``)."""
        await self._call(REVISE_PLAN, run_id, plan, fence=_fence(run_id, lease))

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
        await self._call(
            START_PLANNING, run_id, goal, started_at, budget_usd, fence=_fence(run_id, lease)
        )

    async def record_attempt(
        self, run_id: str, node_id: str, attempt: Attempt, *, lease: LeaseOwner | None = None
    ) -> None:
        """Insert or update an attempt (serialised when written: do not change it meanwhile)."""
        await self._call(PUT_ATTEMPT, run_id, node_id, attempt, fence=_fence(run_id, lease))

    async def record_node(
        self, run_id: str, result: NodeResult, *, lease: LeaseOwner | None = None
    ) -> None:
        """Record a node's final result (serialised when written)."""
        await self._call(PUT_NODE, run_id, result, fence=_fence(run_id, lease))

    async def record_many(
        self,
        run_id: str,
        attempts: Sequence[tuple[str, Attempt]] = (),
        nodes: Sequence[NodeResult] = (),
        *,
        lease: LeaseOwner | None = None,
    ) -> None:
        """Record attempts and node results in one queued call (serialised when written)."""
        parts: list[tuple[Write, tuple[Any, ...]]]
        parts = [(PUT_ATTEMPT, (run_id, *item)) for item in attempts]
        parts += [(PUT_NODE, (run_id, result)) for result in nodes]
        if parts:  # one call: its rows grouped with the batch's, in its transaction
            await self._call(GROUPED, *parts, fence=_fence(run_id, lease))

    async def finish_run(self, result: RunResult, *, lease: LeaseOwner | None = None) -> None:
        """Record the final result."""
        await self._call(write_result, result, fence=_fence(result.run_id, lease))

    async def load_run(self, run_id: str) -> StoredRun:
        """Return a run (``KeyError`` naming it if unknown)."""
        run: StoredRun = await self._call(read_run, run_id)
        return run

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        """Newest first."""
        runs: list[RunSummary] = await self._call(read_summaries, limit)
        return runs

    # -- leases: each a write, under the write lock (see sqlite_queries) -------------

    async def acquire_lease(self, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
        """Take the lease if it is free, stale or ``owner``'s (``RunLeased`` otherwise)."""
        await self._call(take_lease, run_id, owner, ttl_s)

    async def renew_lease(self, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
        """Extend ``owner``'s lease (``RunLeased`` if it is not ``owner``'s any more)."""
        await self._call(extend_lease, run_id, owner, ttl_s)

    async def release_lease(self, run_id: str, owner: LeaseOwner) -> None:
        """Give up ``owner``'s lease, if it holds it."""
        await self._call(RELEASE_LEASE, run_id, owner)
