"""Events as JSON documents: what ``orchestrator run --json-stream`` writes, one a line.

:func:`event_json` turns any :mod:`~orchestrator.events` event into a JSON-ready dict
whose ``type`` names the kind of event (:data:`EVENT_TYPES`, stable names documented in
docs/streaming.md). Records (an attempt, a node, the result) are what ``--json`` prints
for them, so money is a number as there (an exact :class:`~decimal.Decimal` printed as
its shortest float). A ``run_finished`` document is the run's result as ``--json``
prints it, with ``type`` added.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic_core import to_jsonable_python

from orchestrator.events import (
    AttemptFinished,
    AttemptSpending,
    AttemptStarted,
    CostUpdated,
    Escalated,
    Event,
    NodeFinished,
    NodeStarted,
    PlanningStarted,
    PlanRevised,
    RunFinished,
    RunStarted,
    TextDelta,
    ToolCalled,
    ToolReturned,
    VerdictGiven,
)
from orchestrator.results import Attempt

__all__ = ["EVENT_TYPES", "event_json"]

EVENT_TYPES: dict[type[Any], str] = {
    PlanningStarted: "planning_started",
    RunStarted: "run_started",
    NodeStarted: "node_started",
    AttemptStarted: "attempt_started",
    AttemptSpending: "attempt_spending",
    TextDelta: "text_delta",
    ToolCalled: "tool_call",
    ToolReturned: "tool_result",
    CostUpdated: "cost",
    VerdictGiven: "verdict",
    AttemptFinished: "attempt_finished",
    Escalated: "escalation",
    NodeFinished: "node_finished",
    PlanRevised: "plan_revised",
    RunFinished: "run_finished",
}
"""The ``type`` of each event's document."""


def event_json(event: Event) -> dict[str, Any]:
    """``event`` as a JSON-ready dict with its ``type`` first (see the module's docs)."""
    return {"type": EVENT_TYPES[type(event)], **_fields(event)}


def _fields(event: Event) -> dict[str, Any]:  # noqa: PLR0911, PLR0912  (one case per event)
    match event:
        case RunFinished(result=result):
            return result.model_dump(mode="json")
        case TextDelta():
            return {**_where(event), "call": event.call, "purpose": event.purpose,
                    "retry": event.retry, "text": event.text}  # fmt: skip
        case (
            AttemptStarted(attempt=attempt)
            | AttemptSpending(attempt=attempt)
            | AttemptFinished(attempt=attempt)
        ):
            return {**_where(event), "record": _attempt(attempt)}
        case ToolCalled():
            return {**_where(event), "call_id": event.call_id, "name": event.name,
                    "arguments": to_jsonable_python(event.arguments, fallback=repr)}  # fmt: skip
        case ToolReturned():
            return {**_where(event), "call_id": event.call_id, "name": event.name,
                    "content": event.content, "is_error": event.is_error}  # fmt: skip
        case CostUpdated():
            return {**_where(event), "attempt_cost_usd": _usd(event.attempt_cost_usd),
                    "spent_usd": _usd(event.spent_usd), "reserved_usd": _usd(event.reserved_usd),
                    "budget_usd": _usd(event.budget_usd)}  # fmt: skip
        case VerdictGiven(verdict=verdict):
            return {**_where(event), **verdict.model_dump(mode="json")}
        case Escalated():
            return {**_where(event), "from_tier": event.from_tier, "to_tier": event.to_tier,
                    "reason": event.reason}  # fmt: skip
        case NodeStarted():
            return {"run_id": event.run_id, "node_id": event.node_id}
        case NodeFinished(result=node):
            return {
                "run_id": event.run_id,
                "node_id": node.id,
                "node": node.model_dump(mode="json"),
            }
        case RunStarted():
            planning = event.planning.model_dump(mode="json") if event.planning else None
            return {"run_id": event.run_id, "plan": event.plan.model_dump(mode="json"),
                    "planning": planning, "budget_usd": _usd(event.budget_usd)}  # fmt: skip
        case PlanningStarted():
            return {"run_id": event.run_id, "goal": event.goal,
                    "budget_usd": _usd(event.budget_usd)}  # fmt: skip
        case PlanRevised():
            return {"run_id": event.run_id, "plan": event.plan.model_dump(mode="json"),
                    "brief": event.brief, "replaced": list(event.replaced)}  # fmt: skip
    raise TypeError(f"not an engine event: {event!r}")  # pragma: no cover


def _where(event: Any) -> dict[str, Any]:
    """The run, node and attempt (its number) an attempt's event is about."""
    attempt = event.attempt
    number = attempt.number if isinstance(attempt, Attempt) else attempt
    return {"run_id": event.run_id, "node_id": event.node_id, "attempt": number}


def _attempt(attempt: Attempt) -> dict[str, Any]:
    return attempt.model_dump(mode="json")


def _usd(amount: Decimal | None) -> float | None:
    """Money as ``--json`` prints it (:data:`~orchestrator.pricing.USD`): a number."""
    return None if amount is None else float(amount)
