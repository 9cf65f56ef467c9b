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
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

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
from orchestrator.results import (
    PLANNING_NODE,
    PYTHON_TIER,
    Attempt,
    NodeResult,
    planning_attempt,
)
from orchestrator.store.base import RunStore

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
        durability: Durability = "async",
        max_deferred: int = 256,
        max_delay_s: float = 0.1,
    ) -> None:
        if durability not in ("async", "sync"):
            raise ValueError(f"durability must be 'async' or 'sync', not {durability!r}")
        if max_deferred < 1 or max_delay_s < 0:
            raise ValueError("max_deferred must be at least 1 and max_delay_s at least 0")
        self.store = store
        self.durability = durability
        self.max_deferred = max_deferred
        self.max_delay_s = max_delay_s
        self._deferred: dict[str, _Deferred] = {}

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
                await self.store.start_planning(run_id, goal, started, budget_usd=budget)
            case AttemptSpending(run_id=run_id, node_id=node_id, attempt=attempt):
                await self._write(run_id, attempt=(node_id, attempt))
            case RunStarted(run_id=run_id, plan=plan, planning=planning, budget_usd=budget):
                await self.flush(run_id)
                started = datetime.now().astimezone()
                await self.store.start_run(run_id, plan, started, budget_usd=budget)
                if planning is not None:  # its spend counts when the run is resumed
                    attempt = planning_attempt(planning, started)
                    await self.store.record_attempt(run_id, PLANNING_NODE, attempt)
            case AttemptStarted(run_id=run_id, node_id=node_id, attempt=attempt):
                await self._write(run_id, attempt=(node_id, attempt))
            case AttemptFinished(run_id=run_id, node_id=node_id, attempt=attempt):
                await self._write(run_id, attempt=(node_id, attempt))
            case NodeFinished(run_id=run_id, result=result):
                await self._write(run_id, node=result)
            case PlanRevised(run_id=run_id, plan=plan):
                await self.flush(run_id)
                await self.store.revise_plan(run_id, plan)
            case RunFinished(result=result):
                await self.flush(result.run_id)
                await self.store.finish_run(result)
            case _:
                pass

    async def flush(self, run_id: str) -> None:
        """Write ``run_id``'s free records that are waiting, if any."""
        await self._write(run_id)

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
            await self.flush(run_id)
        return True

    def _waiting(self, run_id: str) -> _Deferred:
        deferred = self._deferred.get(run_id)
        if deferred is None:
            deferred = self._deferred[run_id] = _Deferred(since=time.monotonic())
        return deferred

    async def _write(
        self,
        run_id: str,
        *,
        attempt: tuple[str, Attempt] | None = None,
        node: NodeResult | None = None,
    ) -> None:
        """Write what waits for ``run_id`` and the record given, in order, at once."""
        deferred = self._deferred.pop(run_id, None)
        if deferred is None:
            if attempt is not None:
                await self.store.record_attempt(run_id, *attempt)
            elif node is not None:
                await self.store.record_node(run_id, node)
            return
        attempts = [*deferred.attempts, attempt] if attempt is not None else deferred.attempts
        nodes = [*deferred.nodes, node] if node is not None else deferred.nodes
        await self.store.record_many(run_id, attempts, nodes)


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
