"""The run store interface, its in-memory double, and the listener that feeds it.

A store records a run as it happens: the plan when it starts, every attempt when it starts
and ends, every node's result when it ends (before its dependents start: the listener is
async and the engine awaits it), and the run's result at the end. ``orchestrator runs``,
``show`` and ``resume`` read it back.
"""

from __future__ import annotations

import abc
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from orchestrator.events import (
    AttemptFinished,
    AttemptSpending,
    AttemptStarted,
    Event,
    NodeFinished,
    PlanningStarted,
    RunFinished,
    RunStarted,
)
from orchestrator.plan import Plan
from orchestrator.pricing import USD, ZERO_USD
from orchestrator.results import (
    PLANNING_NODE,
    Attempt,
    NodeResult,
    RunResult,
    planning_attempt,
)
from orchestrator.store.lease import Lease, LeaseOwner, claim, extend

__all__ = ["MemoryStore", "RunStore", "RunSummary", "StoreListener", "StoredRun", "spent_on"]


class RunSummary(BaseModel):
    """One line of ``orchestrator runs``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    """The run's id."""
    goal: str
    """Its goal."""
    status: str
    """``planning`` while its goal is planned, ``running`` until it ends, then its
    :class:`~orchestrator.results.RunStatus`."""
    cost_usd: USD
    """What it spent so far; for attempts that were in flight (running, or cut off by a
    crash) the worst case of their calls in flight counts as spent: an upper bound."""
    started_at: datetime
    """When it started."""
    finished_at: datetime | None
    """When it ended; ``None`` if it is running or died."""


class StoredRun(BaseModel):
    """Everything the store holds about one run."""

    model_config = ConfigDict(extra="forbid")

    summary: RunSummary
    """The run's summary."""
    plan: Plan | None
    """The plan it ran; ``None`` if it stopped before planning produced one."""
    nodes: dict[str, NodeResult]
    """Nodes that reached a final status, by id."""
    attempts: dict[str, list[Attempt]]
    """Every attempt recorded, by node id (including ones in flight when it died)."""
    result: RunResult | None
    """The final result, once the run ended."""


class RunStore(abc.ABC):
    """Where runs are recorded. Every method is async and safe to call from the loop."""

    @abc.abstractmethod
    async def start_run(self, run_id: str, plan: Plan, started_at: datetime) -> None:
        """Record a new run (or a resumed one: the plan is kept, the status set to running)."""

    @abc.abstractmethod
    async def start_planning(self, run_id: str, goal: str, started_at: datetime) -> None:
        """Record a run that plans its goal first (status ``planning``, no plan yet).

        A resumed run is marked planning again; :meth:`start_run` later records its plan.
        """

    @abc.abstractmethod
    async def record_attempt(self, run_id: str, node_id: str, attempt: Attempt) -> None:
        """Insert or update an attempt (it is recorded when it starts and when it ends)."""

    @abc.abstractmethod
    async def record_node(self, run_id: str, result: NodeResult) -> None:
        """Record a node's final result."""

    @abc.abstractmethod
    async def finish_run(self, result: RunResult) -> None:
        """Record the run's final result."""

    @abc.abstractmethod
    async def load_run(self, run_id: str) -> StoredRun:
        """Return a run. Raises ``KeyError`` naming the run id if it is unknown."""

    @abc.abstractmethod
    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        """Return the newest runs first."""

    # -- leases: one owner of a run at a time (see orchestrator.store.lease) -------------

    @abc.abstractmethod
    async def acquire_lease(self, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
        """Make ``owner`` the holder of ``run_id``'s lease for ``ttl_s`` seconds.

        The lease may be free, stale (expired, or its holder's process is gone from this
        host) or already ``owner``'s (then it is renewed); checked and taken atomically.

        Raises:
            RunLeased: Another owner holds it and it is not stale (the holder is named).
            ValueError: If ``ttl_s`` is not a positive number.
        """

    @abc.abstractmethod
    async def renew_lease(self, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
        """Extend ``owner``'s lease to ``ttl_s`` seconds from now.

        Raises:
            RunLeased: It is not ``owner``'s any more (released, or taken over).
        """

    @abc.abstractmethod
    async def release_lease(self, run_id: str, owner: LeaseOwner) -> None:
        """Give up ``owner``'s lease; nothing happens if it is not ``owner``'s."""

    async def aclose(self) -> None:  # noqa: B027  (optional hook)
        """Release resources."""

    @property
    def congested(self) -> bool:
        """Whether writes are backing up (the engine then starts no more nodes at once)."""
        return False


class MemoryStore(RunStore):
    """A store in a dict: for tests and for runs that need no durability."""

    def __init__(self) -> None:
        self._runs: dict[str, StoredRun] = {}
        self._leases: dict[str, Lease] = {}  # by run id

    async def start_run(self, run_id: str, plan: Plan, started_at: datetime) -> None:
        """Record a new run (a planned one gets its plan; a resumed one keeps its plan)."""
        self._begin(run_id, plan.goal, plan, started_at, "running")

    async def start_planning(self, run_id: str, goal: str, started_at: datetime) -> None:
        """Record a run that plans its goal first."""
        self._begin(run_id, goal, None, started_at, "planning")

    def _begin(
        self, run_id: str, goal: str, plan: Plan | None, started_at: datetime, status: str
    ) -> None:
        existing = self._runs.get(run_id)
        summary = RunSummary(
            run_id=run_id, goal=existing.summary.goal if existing else goal, status=status,
            cost_usd=_spent(existing.attempts) if existing else ZERO_USD,
            started_at=existing.summary.started_at if existing else started_at, finished_at=None,
        )  # fmt: skip
        if existing:
            existing.summary, existing.result = summary, None
            existing.plan = existing.plan or plan
        else:
            self._runs[run_id] = StoredRun(
                summary=summary, plan=plan, nodes={}, attempts={}, result=None
            )

    async def record_attempt(self, run_id: str, node_id: str, attempt: Attempt) -> None:
        """Insert or update an attempt."""
        run = self._runs[run_id]
        attempts = run.attempts.setdefault(node_id, [])
        copy = attempt.model_copy(deep=True)
        for index, known in enumerate(attempts):
            if known.number == attempt.number and known.started_at == attempt.started_at:
                attempts[index] = copy
                break
        else:
            attempts.append(copy)
        run.summary = run.summary.model_copy(update={"cost_usd": _spent(run.attempts)})

    async def record_node(self, run_id: str, result: NodeResult) -> None:
        """Record a node's final result."""
        self._runs[run_id].nodes[result.id] = result.model_copy(deep=True)

    async def finish_run(self, result: RunResult) -> None:
        """Record the final result."""
        run = self._runs[result.run_id]
        run.result = result
        run.summary = run.summary.model_copy(
            update={"status": result.status.value, "finished_at": result.finished_at,
                    "cost_usd": _spent(run.attempts)}
        )  # fmt: skip

    async def load_run(self, run_id: str) -> StoredRun:
        """Return a run (``KeyError`` if unknown)."""
        if run_id not in self._runs:
            raise KeyError(f"no run {run_id!r} in the store")
        return self._runs[run_id].model_copy(deep=True)

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        """Newest first."""
        runs = sorted(self._runs.values(), key=lambda r: r.summary.started_at, reverse=True)
        return [run.summary for run in runs[:limit]]

    # -- leases ------------------------------------------------------------------------

    async def acquire_lease(self, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
        """Take the lease if it is free, stale or ``owner``'s (``RunLeased`` otherwise)."""
        self._leases[run_id] = claim(self._leases.get(run_id), run_id, owner, ttl_s)

    async def renew_lease(self, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
        """Extend ``owner``'s lease (``RunLeased`` if it is not ``owner``'s)."""
        self._leases[run_id] = extend(self._leases.get(run_id), run_id, owner, ttl_s)

    async def release_lease(self, run_id: str, owner: LeaseOwner) -> None:
        """Give up ``owner``'s lease, if it holds it."""
        lease = self._leases.get(run_id)
        if lease is not None and lease.owner.token == owner.token:
            del self._leases[run_id]


def _spent(attempts: dict[str, list[Attempt]]) -> Decimal:
    return sum((spent_on(a) for node in attempts.values() for a in node), ZERO_USD)


def spent_on(attempt: Attempt) -> Decimal:
    """What an attempt counts as spent: its cost, and calls in flight at their worst case.

    Calls count at their worst case while the attempt has not ended; after a crash that
    is an upper bound of what was billed.
    """
    if attempt.finished_at is None:
        return attempt.cost_usd + attempt.in_flight_usd
    return attempt.cost_usd


class StoreListener:
    """Feeds engine events into a store. Pass it in ``Engine(listeners=[...])``."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    @property
    def congested(self) -> bool:
        """The store's back-pressure, read by the engine (see :class:`EventBus`)."""
        return self.store.congested

    async def __call__(self, event: Event) -> None:
        """Write the event's record; awaited by the engine before it moves on."""
        match event:
            case PlanningStarted(run_id=run_id, goal=goal):
                await self.store.start_planning(run_id, goal, datetime.now().astimezone())
            case AttemptSpending(run_id=run_id, node_id=node_id, attempt=attempt):
                await self.store.record_attempt(run_id, node_id, attempt)
            case RunStarted(run_id=run_id, plan=plan, planning=planning):
                started = datetime.now().astimezone()
                await self.store.start_run(run_id, plan, started)
                if planning is not None:  # its spend counts when the run is resumed
                    attempt = planning_attempt(planning, started)
                    await self.store.record_attempt(run_id, PLANNING_NODE, attempt)
            case AttemptStarted(run_id=run_id, node_id=node_id, attempt=attempt):
                await self.store.record_attempt(run_id, node_id, attempt)
            case AttemptFinished(run_id=run_id, node_id=node_id, attempt=attempt):
                await self.store.record_attempt(run_id, node_id, attempt)
            case NodeFinished(run_id=run_id, result=result):
                await self.store.record_node(run_id, result)
            case RunFinished(result=result):
                await self.store.finish_run(result)
            case _:
                pass
