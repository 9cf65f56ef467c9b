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
from typing import Any

from orchestrator.plan import Plan
from orchestrator.pricing import USD
from orchestrator.results import Attempt, NodeResult, PlanningRecord, RunResult, Verdict

__all__ = [
    "AttemptFinished",
    "AttemptSpending",
    "AttemptStarted",
    "CostUpdated",
    "Escalated",
    "Event",
    "EventBus",
    "Listener",
    "NodeFinished",
    "NodeStarted",
    "PlanRevised",
    "PlanningStarted",
    "RunFinished",
    "RunStarted",
    "TextDelta",
    "ToolCalled",
    "ToolReturned",
    "VerdictGiven",
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
class TextDelta:
    """A piece of a model call's text, as it arrives (only to listeners with ``wants_text``).

    The model client streams a call when someone wants its text (see :class:`EventBus`).
    A call that fails part-way is sent again (``retry`` one higher): the text of its lower
    retries is void. Calls sent in Message Batches report no deltas.
    """

    run_id: str
    node_id: str
    attempt: int
    """The attempt's number (:attr:`~orchestrator.results.Attempt.number`)."""
    call: int
    """The attempt's model call it belongs to: 1, 2... (tool-loop turns, then judges)."""
    purpose: str
    """``task`` (the answer), ``judge`` (a verifier's judge) or ``classify``."""
    retry: int
    """0 for the call's first try, n after n transient failures."""
    text: str


@dataclass(frozen=True, slots=True)
class ToolCalled:
    """The tool loop is about to run a tool call the model asked for."""

    run_id: str
    node_id: str
    attempt: int
    """The attempt's number."""
    call_id: str
    """The call's id (its :class:`ToolReturned` carries it too)."""
    name: str
    arguments: Any
    """The arguments as the model gave them (a JSON object for a valid call)."""


@dataclass(frozen=True, slots=True)
class ToolReturned:
    """A tool call returned (or failed: the model is shown the error)."""

    run_id: str
    node_id: str
    attempt: int
    """The attempt's number."""
    call_id: str
    name: str
    content: str
    """What the model is sent back."""
    is_error: bool


@dataclass(frozen=True, slots=True)
class CostUpdated:
    """A model call was settled: what it cost is spent (after each call, judges included)."""

    run_id: str
    node_id: str
    attempt: int
    """The attempt's number."""
    attempt_cost_usd: USD
    """What the attempt's calls have cost so far."""
    spent_usd: USD
    """What the run has spent so far (planning and an earlier process's spend included)."""
    reserved_usd: USD
    """The worst case of the run's calls in flight now."""
    budget_usd: USD | None
    """The run's budget (``None``: none)."""


@dataclass(frozen=True, slots=True)
class VerdictGiven:
    """An attempt's answer was checked (just before its :class:`AttemptFinished`)."""

    run_id: str
    node_id: str
    attempt: int
    """The attempt's number."""
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class Escalated:
    """An attempt failed and the node goes on one tier up (before that attempt starts)."""

    run_id: str
    node_id: str
    attempt: int
    """The number of the attempt that failed."""
    from_tier: str
    to_tier: str
    reason: str
    """Why it failed: the verdict's reason or the error."""


@dataclass(frozen=True, slots=True)
class NodeFinished:
    """A node reached its final status."""

    run_id: str
    result: NodeResult


@dataclass(frozen=True, slots=True)
class PlanRevised:
    """Tasks failed for good and the planner revised the rest of the plan (``replan``)."""

    run_id: str
    plan: Plan
    """The plan the run goes on with: what succeeded as it ran, the revision's other tasks."""
    brief: str
    """What the planner was told of the plan as it ran."""
    replaced: tuple[str, ...]
    """The tasks the revision dropped or runs afresh (their results stay, as replaced)."""


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
    | PlanRevised
    | TextDelta
    | ToolCalled
    | ToolReturned
    | CostUpdated
    | VerdictGiven
    | Escalated
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

    Text: :class:`TextDelta` events go only to listeners whose ``wants_text`` attribute is
    true (read at each model call); while none wants them, model calls are not streamed
    for their sake and no delta is made.
    """

    __slots__ = ("_gauges", "_listeners", "_texters")

    def __init__(self, listeners: Sequence[Listener] = ()) -> None:
        self._listeners: list[Listener] = []
        self._gauges: list[Listener] = []
        self._texters: list[Listener] = []
        for listener in listeners:
            self.subscribe(listener)

    def subscribe(self, listener: Listener) -> None:
        """Add a listener."""
        self._listeners.append(listener)
        if hasattr(type(listener), "congested"):
            self._gauges.append(listener)
        if hasattr(listener, "wants_text"):
            self._texters.append(listener)

    @property
    def wants_text(self) -> bool:
        """Whether a listener wants :class:`TextDelta` events now."""
        return any(getattr(texter, "wants_text", False) for texter in self._texters)

    async def emit_finished(self, run_id: str, node_id: str, attempt: Attempt) -> None:
        """Deliver an attempt's end: its :class:`VerdictGiven` (if any), then its end."""
        if attempt.verdict is not None and self._listeners:
            await self.emit(VerdictGiven(run_id, node_id, attempt.number, attempt.verdict))
        await self.emit(AttemptFinished(run_id, node_id, attempt))

    async def emit_text(self, event: TextDelta) -> None:
        """Deliver ``event`` to the listeners that want text, in order."""
        for listener in self._texters:
            if getattr(listener, "wants_text", False):
                result = listener(event)
                if inspect.isawaitable(result):
                    await result

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
