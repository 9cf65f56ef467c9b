"""Typed events the engine emits as a run progresses.

Tracing, the run store and progress displays subscribe to these instead of being ``if``s
inside the engine. Listeners are called in order; a listener may be ``async`` (its
coroutine is awaited before the engine moves on, which is how the store makes a node's
result durable before its dependents start). Events are slotted dataclasses rather than
pydantic models: they are built on the scheduler's hot path and never serialised as such.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from orchestrator.plan import Plan
from orchestrator.results import Attempt, NodeResult, PlanningRecord, RunResult

__all__ = [
    "AttemptFinished",
    "AttemptStarted",
    "Event",
    "EventBus",
    "Listener",
    "NodeFinished",
    "NodeStarted",
    "RunFinished",
    "RunStarted",
]


@dataclass(frozen=True, slots=True)
class RunStarted:
    """A run begins."""

    run_id: str
    plan: Plan
    planning: PlanningRecord | None = None
    """What planning the plan cost, when a model planned it."""


@dataclass(frozen=True, slots=True)
class NodeStarted:
    """A node's dependencies are done and it holds a concurrency slot."""

    run_id: str
    node_id: str


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    """An attempt is about to call its tier."""

    run_id: str
    node_id: str
    attempt: Attempt


@dataclass(frozen=True, slots=True)
class AttemptFinished:
    """An attempt ended (verdict or error recorded on it)."""

    run_id: str
    node_id: str
    attempt: Attempt


@dataclass(frozen=True, slots=True)
class NodeFinished:
    """A node reached its final status."""

    run_id: str
    result: NodeResult


@dataclass(frozen=True, slots=True)
class RunFinished:
    """The run ended."""

    run_id: str
    result: RunResult


Event = RunStarted | NodeStarted | AttemptStarted | AttemptFinished | NodeFinished | RunFinished
"""Any engine event."""

Listener = Callable[[Event], Awaitable[None] | None]
"""A function called with every event; may be async."""


class EventBus:
    """Calls every listener with every event, awaiting async ones."""

    __slots__ = ("_listeners",)

    def __init__(self, listeners: Sequence[Listener] = ()) -> None:
        self._listeners = list(listeners)

    def subscribe(self, listener: Listener) -> None:
        """Add a listener."""
        self._listeners.append(listener)

    def __bool__(self) -> bool:
        return bool(self._listeners)

    async def emit(self, event: Event) -> None:
        """Deliver ``event`` to every listener in order."""
        for listener in self._listeners:
            result = listener(event)
            if inspect.isawaitable(result):
                await result
