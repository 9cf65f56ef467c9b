"""The in-memory run store: :class:`MemoryStore`, for tests and runs that need no durability.

It keeps every record in a dict (a deep copy of what it is given and of what it returns)
and its leases the same way, by the rules of :mod:`~orchestrator.store.lease`; what
happens to a run is lost with the process.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from orchestrator.exceptions import RunLeased
from orchestrator.plan import Plan
from orchestrator.pricing import ZERO_USD
from orchestrator.results import Attempt, NodeResult, RunResult
from orchestrator.store.base import RunStore, RunSummary, StoredRun, spent_in
from orchestrator.store.lease import Lease, LeaseOwner, claim, extend, holds

__all__ = ["MemoryStore"]


class MemoryStore(RunStore):
    """A store in a dict: for tests and for runs that need no durability."""

    def __init__(self) -> None:
        self._runs: dict[str, StoredRun] = {}
        self._leases: dict[str, Lease] = {}  # by run id

    def _fence(self, run_id: str, lease: LeaseOwner | None) -> None:
        """``RunLeased`` unless ``lease`` (if given) still holds the run's lease."""
        if lease is not None and not holds(self._leases.get(run_id), lease):
            raise RunLeased(run_id)

    async def start_run(
        self,
        run_id: str,
        plan: Plan,
        started_at: datetime,
        *,
        budget_usd: Decimal | None = None,
        lease: LeaseOwner | None = None,
    ) -> None:
        """Record a new run (a planned one gets its plan; a resumed one keeps its plan)."""
        self._fence(run_id, lease)
        self._begin(run_id, plan.goal, plan, started_at, "running", budget_usd)

    async def revise_plan(
        self, run_id: str, plan: Plan, *, lease: LeaseOwner | None = None
    ) -> None:
        """Replace the run's plan with its revision (``replan``)."""
        self._fence(run_id, lease)
        self._runs[run_id].plan = plan

    async def start_planning(
        self,
        run_id: str,
        goal: str,
        started_at: datetime,
        *,
        budget_usd: Decimal | None = None,
        lease: LeaseOwner | None = None,
    ) -> None:
        """Record a run that plans its goal first."""
        self._fence(run_id, lease)
        self._begin(run_id, goal, None, started_at, "planning", budget_usd)

    def _begin(  # noqa: PLR0917  (the arguments of start_run and start_planning)
        self,
        run_id: str,
        goal: str,
        plan: Plan | None,
        started_at: datetime,
        status: str,
        budget_usd: Decimal | None,
    ) -> None:
        existing = self._runs.get(run_id)
        summary = RunSummary(
            run_id=run_id, goal=existing.summary.goal if existing else goal, status=status,
            cost_usd=spent_in(existing.attempts) if existing else ZERO_USD,
            started_at=existing.summary.started_at if existing else started_at, finished_at=None,
        )  # fmt: skip
        if existing:
            existing.summary, existing.result = summary, None
            existing.plan = existing.plan or plan
            existing.budget_usd = budget_usd
        else:
            self._runs[run_id] = StoredRun(
                summary=summary, plan=plan, nodes={}, attempts={}, result=None,
                budget_usd=budget_usd,
            )  # fmt: skip

    async def record_attempt(
        self, run_id: str, node_id: str, attempt: Attempt, *, lease: LeaseOwner | None = None
    ) -> None:
        """Insert or update an attempt."""
        self._fence(run_id, lease)
        run = self._runs[run_id]
        attempts = run.attempts.setdefault(node_id, [])
        copy = attempt.model_copy(deep=True)
        for index, known in enumerate(attempts):
            if known.number == attempt.number and known.started_at == attempt.started_at:
                attempts[index] = copy
                break
        else:
            attempts.append(copy)
        run.summary = run.summary.model_copy(update={"cost_usd": spent_in(run.attempts)})

    async def record_node(
        self, run_id: str, result: NodeResult, *, lease: LeaseOwner | None = None
    ) -> None:
        """Record a node's final result."""
        self._fence(run_id, lease)
        self._runs[run_id].nodes[result.id] = result.model_copy(deep=True)

    async def finish_run(self, result: RunResult, *, lease: LeaseOwner | None = None) -> None:
        """Record the final result."""
        self._fence(result.run_id, lease)
        run = self._runs[result.run_id]
        run.result = result
        run.summary = run.summary.model_copy(
            update={"status": result.status.value, "finished_at": result.finished_at,
                    "cost_usd": spent_in(run.attempts)}
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
