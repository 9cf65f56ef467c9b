"""Typed events the engine emits as a run progresses.

Tracing, the run store and progress displays subscribe to these instead of being ``if``s
inside the engine. Listeners are called in order; a listener may be ``async`` (its
coroutine is awaited before the engine moves on, which is how the store makes a node's
result durable before its dependents start). A listener that writes somewhere slower than
nodes finish can say so with a ``congested`` property (see :class:`EventBus`): the engine
then starts no more nodes at once until it catches up. Events are slotted dataclasses rather than
pydantic models: they are built on the scheduler's hot path and never serialised as such.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from orchestrator.plan import Plan
from orchestrator.pricing import USD
from orchestrator.results import Attempt, NodeResult, PlanningRecord, RunResult

__all__ = [
    "AttemptFinished",
    "AttemptSpending",
    "AttemptStarted",
    "Event",
    "EventBus",
    "Listener",
    "NodeFinished",
    "NodeStarted",
    "PlanningStarted",
    "RunFinished",
    "RunStarted",
]


@dataclass(frozen=True, slots=True)
class PlanningStarted:
    """A run that plans its goal begins, before the planner's first call.

    Its planning rounds follow as :class:`AttemptSpending` events of the pseudo node
    :data:`~orchestrator.results.PLANNING_NODE`; :class:`RunStarted` follows once there is a
    plan, or :class:`RunFinished` if planning failed.
    """

    run_id: str
    goal: str
    budget_usd: USD | None = None
    """The run's budget (``None``: none); the store keeps it, and ``resume`` runs on it."""


@dataclass(frozen=True, slots=True)
class RunStarted:
    """A run begins."""

    run_id: str
    plan: Plan
    planning: PlanningRecord | None = None
    """What planning the plan cost, when a model planned it."""
    budget_usd: USD | None = None
    """The run's budget (``None``: none); the store keeps it, and ``resume`` runs on it."""


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
class AttemptSpending:
    """An attempt's spend record changed: a call's worst case was reserved, about to be sent.

    Emitted before the request leaves, so a store that records it (and makes it durable
    before returning) keeps what may be billed even if the process dies during the call.
    Planning rounds are reported this way too, started and finished included, under
    :data:`~orchestrator.results.PLANNING_NODE`.
    """

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


Event = (
    PlanningStarted
    | RunStarted
    | NodeStarted
    | AttemptStarted
    | AttemptSpending
    | AttemptFinished
    | NodeFinished
    | RunFinished
)
"""Any engine event."""

Listener = Callable[[Event], Awaitable[None] | None]
"""A function called with every event; may be async."""


class EventBus:
    """Calls every listener with every event, awaiting async ones.

    Back-pressure: a listener object with a ``congested`` property (a bool, cheap to read)
    reports that its writes are backing up, as the SQLite store's listener does while its
    write queue is full. :meth:`congested` is true while any listener says so, and the
    engine then adds no concurrently running node until it is false again.
    """

    __slots__ = ("_gauges", "_listeners")

    def __init__(self, listeners: Sequence[Listener] = ()) -> None:
        self._listeners: list[Listener] = []
        self._gauges: list[Listener] = []
        for listener in listeners:
            self.subscribe(listener)

    def subscribe(self, listener: Listener) -> None:
        """Add a listener."""
        self._listeners.append(listener)
        if hasattr(type(listener), "congested"):
            self._gauges.append(listener)

    def __bool__(self) -> bool:
        return bool(self._listeners)

    @property
    def watches_congestion(self) -> bool:
        """Whether any listener reports congestion (else :meth:`congested` is always false)."""
        return bool(self._gauges)

    def congested(self) -> bool:
        """Whether a listener's writes are backing up (its ``congested`` property)."""
        return any(gauge.congested for gauge in self._gauges)  # type: ignore[attr-defined]

    async def emit(self, event: Event) -> None:
        """Deliver ``event`` to every listener in order."""
        for listener in self._listeners:
            result = listener(event)
            if inspect.isawaitable(result):
                await result
