"""Helpers for testing code built on the orchestrator.

Model doubles, event capture, and contexts and judges for calling verifiers directly.

Example::

    from orchestrator import Engine
    from orchestrator.testing import EventCapture, TestModel

    events = EventCapture()
    engine = Engine(TestModel("done"), listeners=[events])
    result = await engine.run(plan)
    assert events.of_type(AttemptFinished)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from orchestrator.events import Event
from orchestrator.models.base import ToolCall
from orchestrator.models.test import FunctionModel, ModelFunction, TestModel, tool_results
from orchestrator.plan import Task
from orchestrator.verifier import JudgeFunction, JudgeRequest, JudgeVerdict, VerificationContext

__all__ = [
    "EventCapture",
    "FunctionModel",
    "JudgeRequest",
    "ModelFunction",
    "RecordingJudge",
    "TestModel",
    "ToolCall",
    "no_judge",
    "tool_results",
    "verification_context",
]

E = TypeVar("E", bound=Event)


class EventCapture:
    """A listener that keeps every event it receives, in order.

    Args:
        text: Receive :class:`~orchestrator.events.TextDelta` events too (model calls are
            then streamed, as for :meth:`Run.events <orchestrator.run.Run.events>`).
    """

    def __init__(self, *, text: bool = False) -> None:
        self.events: list[Event] = []
        """Every event received."""
        self.wants_text = text
        """Whether text deltas are wanted (see :class:`~orchestrator.events.EventBus`)."""

    def __call__(self, event: Event) -> None:
        """Record ``event`` (the listener protocol)."""
        self.events.append(event)

    def of_type(self, kind: type[E]) -> list[E]:
        """Return the captured events of one type, in order."""
        return [event for event in self.events if isinstance(event, kind)]


@dataclass
class RecordingJudge:
    """A judge that gives one verdict and records every request.

    A :class:`~orchestrator.verifier.JudgeFunction`, for testing verifiers that ask a judge.
    """

    verdict: JudgeVerdict
    calls: list[JudgeRequest] = field(default_factory=list)
    """Every request, in order."""

    async def __call__(self, request: JudgeRequest, /) -> JudgeVerdict:
        """Record the request and return the verdict."""
        self.calls.append(request)
        return self.verdict


async def no_judge(request: JudgeRequest, /) -> JudgeVerdict:
    """A judge for verifiers that must not ask one: fails the test if called."""
    raise AssertionError(f"no judge call expected (asked to judge against {request.criteria!r})")


def verification_context(
    text: str,
    *,
    task: Task | None = None,
    tier: str = "haiku",
    judge: JudgeFunction = no_judge,
    prompt: str = "",
) -> VerificationContext:
    """A context for calling ``verifier.verify(output, context)`` directly in a test."""
    task = task or Task(id="t", instruction=prompt or "the task")
    return VerificationContext(
        task=task, text=text, tier=tier, judge=judge, prompt=prompt or task.instruction
    )
