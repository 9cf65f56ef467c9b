"""The store listener: :class:`StoreListener` writes the engine's events into a run store.

It is the one place that maps events to store calls: which event starts a run, records an
attempt or a node, and finishes the run. The engine awaits it before it moves on.

What must be durable before the engine moves on is what costs money: a model call's
reserved worst case before the request is sent, each model attempt and the result of a
node that called a model. Those are written at once (``durability="sync"`` writes every
record at once). Free work, the records of plain Python nodes, is written behind
(``durability="async"``, the default, as LangGraph's default durability writes a step's
checkpoint while the next step runs): kept in order and written together with the next
paid record, at the start and end of the run, or once ``max_deferred`` are waiting or the
oldest has waited ``max_delay_s`` (checked at each event). So everything before a paid
record is durable before that record is, and a crash can only lose free work done since the
last write: those Python nodes run again on resume; nothing that was paid for is lost or
paid twice.

A node's accepted answer (the attempt that passed verification) is written together with
the node's result, in one transaction, not on its own before it: a process killed between
the two used to leave an answer recorded as paid for and a node that ``resume`` asked
again, paying for it twice. Until the pair is written, the attempt's last record is the
one made before its call was sent (its worst case, counted as spent): a crash then is a
crash with the call in flight. It is also one write fewer per model node.

With ``lease`` (the :class:`~orchestrator.store.lease.HeldLease` of the run, as the CLI
holds it), the writes only the run's owner may make are *fenced*
(:mod:`~orchestrator.store.base`): the record made before each model call is sent, node
results and the run's own writes (start, revision, result). The first one refused, or a
renewal that finds the lease taken, reports the lease lost
(:meth:`~orchestrator.store.lease.HeldLease.lose`, which stops the run); the call whose
record was refused is not sent (its :class:`~orchestrator.exceptions.RunLeased` is raised
to it), and from then on only records of what was spent are written, never a result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from orchestrator.events import (
    AttemptFinished,
    AttemptSpending,
    AttemptStarted,
    Event,
    NodeFinished,
    PlanningStarted,
    PlanRevised,
    RunFinished,
    RunStarted,
)
from orchestrator.exceptions import RunLeased
from orchestrator.plan import Plan
from orchestrator.results import (
    PLANNING_NODE,
    PYTHON_TIER,
    Attempt,
    NodeResult,
    PlanningRecord,
    planning_attempt,
)
from orchestrator.store.base import RunStore
from orchestrator.store.lease import HeldLease, LeaseOwner

__all__ = ["Durability", "StoreListener"]

Durability = Literal["async", "sync"]
"""``"sync"``: every record is durable before the engine moves on; ``"async"``: free work
(Python nodes) is written behind, everything paid for at once (see the module)."""


@dataclass(slots=True)
class _Deferred:
    """One run's free records waiting to be written, in order."""

    attempts: list[tuple[str, Attempt]] = field(default_factory=list)
    nodes: list[NodeResult] = field(default_factory=list)
    since: float = 0.0

    def __len__(self) -> int:
        return len(self.attempts) + len(self.nodes)


class StoreListener:
    """Feeds engine events into a store. Pass it in ``Engine(listeners=[...])``.

    Args:
        store: Where runs are recorded.
        lease: The lease held on a run (:func:`~orchestrator.store.lease.hold_lease`):
            that run's owner-only writes are fenced by it (see the module).
        durability: ``"async"`` (default) writes free work behind; ``"sync"`` writes every
            record before the engine moves on (a node's result before its dependents
            start), at one store round trip per record.
        max_deferred: Most free records waiting to be written.
        max_delay_s: Longest a free record waits, checked at each event.
    """

    def __init__(
        self,
        store: RunStore,
        *,
        lease: HeldLease | None = None,
        durability: Durability = "async",
        max_deferred: int = 256,
        max_delay_s: float = 0.1,
    ) -> None:
        if durability not in ("async", "sync"):
            raise ValueError(f"durability must be 'async' or 'sync', not {durability!r}")
        if max_deferred < 1 or max_delay_s < 0:
            raise ValueError("max_deferred must be at least 1 and max_delay_s at least 0")
        self.store = store
        self.lease = lease
        self.durability = durability
        self.max_deferred = max_deferred
        self.max_delay_s = max_delay_s
        self._deferred: dict[str, _Deferred] = {}
        self._answers: dict[tuple[str, str], list[Attempt]] = {}  # (run, node): unwritten

    @property
    def congested(self) -> bool:
        """The store's back-pressure, read by the engine (see :class:`EventBus`)."""
        return self.store.congested

    async def __call__(self, event: Event) -> None:
        """Write the event's record; awaited by the engine before it moves on."""
        if self.durability == "async" and await self._free_work(event):
            return
        match event:
            case PlanningStarted(run_id=run_id, goal=goal, budget_usd=budget):
                await self.flush(run_id)
                started = datetime.now().astimezone()
                await self._run_write(
                    run_id, self.store.start_planning, run_id, goal, started, budget_usd=budget
                )
            case AttemptSpending(run_id=run_id, node_id=node_id, attempt=attempt):
                await self._write(run_id, [(node_id, attempt)], sending=_sending(attempt))
            case RunStarted(run_id=run_id, plan=plan, planning=planning, budget_usd=budget):
                await self._started(run_id, plan, planning, budget)
            case AttemptStarted(run_id=run_id, node_id=node_id, attempt=attempt):
                await self._write(run_id, [(node_id, attempt)])
            case AttemptFinished(run_id=run_id, node_id=node_id, attempt=attempt):
                await self._finished(run_id, node_id, attempt)
            case NodeFinished(run_id=run_id, result=result):
                await self._write(run_id, node=result)
            case PlanRevised(run_id=run_id, plan=plan):
                await self.flush(run_id)
                await self._run_write(run_id, self.store.revise_plan, run_id, plan)
            case RunFinished(result=result):
                await self.flush(result.run_id)
                await self._run_write(result.run_id, self.store.finish_run, result)
            case _:
                pass

    async def flush(self, run_id: str) -> None:
        """Write ``run_id``'s records that are waiting (free work, answers), if any."""
        answers = [
            (node_id, attempt)
            for run, node_id in [key for key in self._answers if key[0] == run_id]
            for attempt in self._answers.pop((run, node_id))
        ]
        await self._write(run_id, answers)

    async def _started(
        self, run_id: str, plan: Plan, planning: PlanningRecord | None, budget: Decimal | None
    ) -> None:
        await self.flush(run_id)
        started = datetime.now().astimezone()
        await self._run_write(
            run_id, self.store.start_run, run_id, plan, started, budget_usd=budget
        )
        if planning is not None:  # its spend counts when the run is resumed
            await self._write(run_id, [(PLANNING_NODE, planning_attempt(planning, started))])

    async def _finished(self, run_id: str, node_id: str, attempt: Attempt) -> None:
        if attempt.passed and attempt.answering:  # the node's answer: with its result
            self._answers.setdefault((run_id, node_id), []).append(attempt)
        else:
            await self._write(run_id, [(node_id, attempt)])

    async def _free_work(self, event: Event) -> bool:
        """Defer the record of ``event`` if it is free work; whether it was."""
        match event:
            case AttemptStarted(attempt=attempt) if _free(attempt):
                return True  # its finished record supersedes it
            case AttemptFinished(run_id=run_id, node_id=node_id, attempt=attempt) if _free(attempt):
                self._waiting(run_id).attempts.append((node_id, attempt))
            case NodeFinished(run_id=run_id, result=result) if all(
                _free(attempt) for attempt in result.attempts
            ):
                self._waiting(run_id).nodes.append(result)
            case _:
                return False
        deferred = self._deferred[run_id]
        if len(deferred) >= self.max_deferred or (
            time.monotonic() - deferred.since >= self.max_delay_s
        ):
            await self._write(run_id)
        return True

    def _waiting(self, run_id: str) -> _Deferred:
        deferred = self._deferred.get(run_id)
        if deferred is None:
            deferred = self._deferred[run_id] = _Deferred(since=time.monotonic())
        return deferred

    def _fence(self, run_id: str) -> LeaseOwner | None:
        """The owner that fences ``run_id``'s writes, if this listener holds its lease."""
        lease = self.lease
        return lease.owner if lease is not None and lease.run_id == run_id else None

    async def _write(
        self,
        run_id: str,
        attempts: list[tuple[str, Attempt]] | None = None,
        node: NodeResult | None = None,
        *,
        sending: bool = False,
    ) -> None:
        """Write what waits for ``run_id`` and the records given, in order, at once.

        Fenced (the run's lease is held) when it holds a node's result or is a call's
        record before it is sent; see the module for what a refusal does.
        """
        deferred = self._deferred.pop(run_id, None)
        records = [*deferred.attempts] if deferred is not None else []
        nodes = [*deferred.nodes] if deferred is not None else []
        if node is not None:
            records += [(node.id, a) for a in self._answers.pop((run_id, node.id), ())]
            nodes.append(node)
        records += attempts or ()
        lease = self._fence(run_id)
        if lease is None:
            await self._store_write(run_id, records, nodes, None)
            return
        if (lost := self._lost()) is not None:  # not the run's owner any more
            if sending:
                raise lost  # the call is not sent
            await self._store_write(run_id, _spent(records), [], None)  # never a result
            return
        fenced = sending or bool(nodes)
        try:
            await self._store_write(run_id, records, nodes, lease if fenced else None)
        except RunLeased as exc:
            if not fenced:
                raise
            self._lose(exc)
            if sending:
                raise
            await self._store_write(run_id, _spent(records), [], None)

    async def _store_write(
        self,
        run_id: str,
        attempts: list[tuple[str, Attempt]],
        nodes: list[NodeResult],
        lease: LeaseOwner | None,
    ) -> None:
        fence: dict[str, Any] = {} if lease is None else {"lease": lease}
        if len(attempts) == 1 and not nodes:
            await self.store.record_attempt(run_id, *attempts[0], **fence)
        elif len(nodes) == 1 and not attempts:
            await self.store.record_node(run_id, nodes[0], **fence)
        elif attempts or nodes:
            await self.store.record_many(run_id, attempts, nodes, **fence)

    async def _run_write(self, run_id: str, write: Any, *args: Any, **kwargs: Any) -> None:
        """One of the run's own writes (start, revision, result): fenced if leased."""
        lease = self._fence(run_id)
        if lease is None:
            await write(*args, **kwargs)
            return
        if self._lost() is not None:
            return  # the run is another process's now: its status is not this one's to write
        try:
            await write(*args, **kwargs, lease=lease)
        except RunLeased as exc:
            self._lose(exc)

    def _lost(self) -> RunLeased | None:
        lease = self.lease
        if lease is None or not lease.lost.is_set():
            return None
        return lease.lost_to or RunLeased(lease.run_id)

    def _lose(self, reason: RunLeased) -> None:
        if self.lease is not None:
            self.lease.lose(reason)


def _sending(attempt: Attempt) -> bool:
    """Whether a spending record is the one made before a call is sent.

    The attempt has not ended and holds the worst case of calls in flight, one of them
    about to leave (or, for a batch call, just submitted: fencing that record too is safe,
    its call is then counted at its worst case).
    """
    return attempt.finished_at is None and attempt.in_flight_usd > 0


def _spent(records: list[tuple[str, Attempt]]) -> list[tuple[str, Attempt]]:
    """The attempts that record money spent, or that may have been (a lost lease's writes)."""
    return [
        (node_id, a) for node_id, a in records
        if a.cost_usd or a.in_flight_usd or a.cost_unknown or a.batch_pending
    ]  # fmt: skip


def _free(attempt: Attempt) -> bool:
    """Whether an attempt is free work: a Python node's that called no model.

    A Python node's verifier may ask a judge model: then it is paid for, and written at
    once like any model attempt.
    """
    return (
        attempt.tier == PYTHON_TIER
        and attempt.calls == 0
        and not attempt.cost_usd
        and not attempt.in_flight_usd
        and not attempt.cost_unknown
    )
