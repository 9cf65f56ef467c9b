"""The store listener: :class:`StoreListener` writes the engine's events into a run store.

It is the one place that maps events to store calls: which event starts a run, records an
attempt or a node, and finishes the run. The engine awaits it, so each record is written
before the engine moves on (a node's result before its dependents start).
"""

from __future__ import annotations

from datetime import datetime

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
from orchestrator.results import PLANNING_NODE, planning_attempt
from orchestrator.store.base import RunStore

__all__ = ["StoreListener"]


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
