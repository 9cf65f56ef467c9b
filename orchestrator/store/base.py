"""The run store interface: :class:`RunStore`, the records it holds, and what they count.

A store records a run as it happens: the plan when it starts, every attempt when it starts
and ends, every node's result when it ends, and the run's result at the end (the
:class:`~orchestrator.store.listener.StoreListener` decides when each record is written:
what is paid for before the engine moves on, free work behind). ``orchestrator runs``,
``show`` and ``resume`` read it back.

This module owns the interface and its value types (:class:`RunSummary`,
:class:`StoredRun`) and :func:`spent_on`, what an attempt counts as spent in every store.

**Fencing.** Every write takes an optional ``lease``: the :class:`LeaseOwner` that holds
the run's lease (:mod:`~orchestrator.store.lease`). Given one, the store makes the write
only if that owner still holds the lease, checked in the same transaction as the write;
otherwise it writes nothing and raises :class:`~orchestrator.exceptions.RunLeased`. So a
driver that lost its run's lease while it was paused (a long GC pause, a suspended VM, a
partition from the store) cannot record a call as about to be sent, nor a node's result,
nor the run's status, over the process that took the run over: the
:class:`~orchestrator.store.listener.StoreListener` of a driver holding a lease fences the
write made before each model call is sent (so a call is refused before it leaves), node
results and the run's own writes; records of what was spent are never refused.
The stores are :mod:`~orchestrator.store.memory` and :mod:`~orchestrator.store.sqlite`;
:mod:`~orchestrator.store.listener` feeds one from the engine's events.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from orchestrator.plan import Plan
from orchestrator.pricing import USD, ZERO_USD
from orchestrator.results import Attempt, NodeResult, Outcome, RunResult
from orchestrator.store.lease import LeaseOwner

__all__ = [
    "RunStore",
    "RunSummary",
    "StoredRun",
    "interrupted",
    "past_rejections",
    "spent_in",
    "spent_on",
]


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
    budget_usd: USD | None = None
    """The budget it was started (or last resumed) with, the most the whole run may spend
    (``orchestrator resume`` keeps it); ``None`` if it had none. A run an older version
    left unfinished, before stores kept budgets, reads as ``None``."""


class RunStore(abc.ABC):
    """Where runs are recorded. Every method is async and safe to call from the loop."""

    # Every write below takes ``lease``: made only while that owner holds the run's lease,
    # checked in the write's own transaction; else nothing is written and ``RunLeased`` is
    # raised (see the module). ``None``: written whoever holds the lease, as before leases.

    @abc.abstractmethod
    async def start_run(
        self,
        run_id: str,
        plan: Plan,
        started_at: datetime,
        *,
        budget_usd: Decimal | None = None,
        lease: LeaseOwner | None = None,
    ) -> None:
        """Record a new run (or a resumed one: the plan is kept, the status set to running).

        ``budget_usd`` is the run's budget (``None``: none); it replaces the stored one.
        """

    async def revise_plan(
        self, run_id: str, plan: Plan, *, lease: LeaseOwner | None = None
    ) -> None:
        """Replace the run's plan with its revision (``replan``), which ``resume`` runs on.

        Raises:
            NotImplementedError: If this store cannot (a store written before revisions).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot store a revised plan")

    @abc.abstractmethod
    async def start_planning(
        self,
        run_id: str,
        goal: str,
        started_at: datetime,
        *,
        budget_usd: Decimal | None = None,
        lease: LeaseOwner | None = None,
    ) -> None:
        """Record a run that plans its goal first (status ``planning``, no plan yet).

        A resumed run is marked planning again; :meth:`start_run` later records its plan.
        ``budget_usd`` is the run's budget, as for :meth:`start_run`.
        """

    @abc.abstractmethod
    async def record_attempt(
        self, run_id: str, node_id: str, attempt: Attempt, *, lease: LeaseOwner | None = None
    ) -> None:
        """Insert or update an attempt (it is recorded when it starts and when it ends)."""

    @abc.abstractmethod
    async def record_node(
        self, run_id: str, result: NodeResult, *, lease: LeaseOwner | None = None
    ) -> None:
        """Record a node's final result."""

    async def record_many(
        self,
        run_id: str,
        attempts: Sequence[tuple[str, Attempt]] = (),
        nodes: Sequence[NodeResult] = (),
        *,
        lease: LeaseOwner | None = None,
    ) -> None:
        """Record several attempts (``(node_id, attempt)``) and node results, in order.

        A store may write them in one transaction (the SQLite and PostgreSQL stores do:
        with ``lease``, all of them or none); by default, one :meth:`record_attempt` or
        :meth:`record_node` call each.
        """
        fence = {} if lease is None else {"lease": lease}  # a store of before leases: as it was
        for node_id, attempt in attempts:
            await self.record_attempt(run_id, node_id, attempt, **fence)
        for result in nodes:
            await self.record_node(run_id, result, **fence)

    @abc.abstractmethod
    async def finish_run(self, result: RunResult, *, lease: LeaseOwner | None = None) -> None:
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


def spent_on(attempt: Attempt) -> Decimal:
    """What an attempt counts as spent: its cost, and calls in flight at their worst case.

    Calls count at their worst case while the attempt has not ended; after a crash that
    is an upper bound of what was billed.
    """
    if attempt.finished_at is None:
        return attempt.cost_usd + attempt.in_flight_usd
    return attempt.cost_usd


def spent_in(attempts: Mapping[str, Sequence[Attempt]]) -> Decimal:
    """What a run's attempts (by node) count as spent, exactly: :func:`spent_on` summed."""
    return sum((spent_on(a) for node in attempts.values() for a in node), ZERO_USD)


def interrupted(attempt: Attempt) -> Attempt:
    """An attempt the process died in: what it may have been billed counts as spent.

    Its cost is an upper bound (``cost_unknown``) only if a call was in flight; an
    attempt that died before sending anything (waiting for a slot) cost what it had.
    """
    if attempt.finished_at is not None:
        return attempt
    in_flight = attempt.in_flight_usd > 0
    return attempt.model_copy(
        update={
            "error": "interrupted: the process ended during this attempt"
            + (
                "; its cost counts the worst case of the calls it had in flight (an upper bound)"
                if in_flight
                else " before it had a call in flight"
            ),
            "error_type": Outcome.INTERRUPTED,
            "cost_usd": attempt.cost_usd + attempt.in_flight_usd,
            "in_flight_usd": ZERO_USD,
            "cost_unknown": attempt.cost_unknown or in_flight,
        }
    )


def past_rejections(
    names: Sequence[str], result: NodeResult, index: int, top: int, reason: str
) -> tuple[int, str]:
    """Where a resumed node starts: above the highest tier (of ``names``) that failed it.

    Attempts of an earlier process that verification rejected are not paid for again;
    interrupted or errored ones are (they proved nothing about their tier). Returns the
    tier's index and the route reason (``reason`` unless it changed).
    """
    rejected = {
        names.index(a.tier): a.verdict.reason
        for a in result.attempts
        if a.verdict is not None and not a.verdict.passed and a.tier in names
    }
    if not rejected or max(rejected) < index:
        return index, reason
    worst = max(rejected)
    why = f"resumed above {names[worst]}, which already failed verification"
    return min(worst + 1, top), f"{why}: {rejected[worst]}"
