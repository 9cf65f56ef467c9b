"""Helpers for testing code built on the orchestrator: model doubles and event capture.

Example::

    from orchestrator import Engine
    from orchestrator.testing import EventCapture, TestModel

    events = EventCapture()
    engine = Engine(TestModel("done"), listeners=[events])
    result = await engine.run(plan)
    assert events.of_type(AttemptFinished)
"""

from __future__ import annotations

from typing import TypeVar

from orchestrator.events import Event
from orchestrator.models.test import FunctionModel, ModelFunction, TestModel

__all__ = ["EventCapture", "FunctionModel", "ModelFunction", "TestModel"]

E = TypeVar("E", bound=Event)


class EventCapture:
    """A listener that keeps every event it receives, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        """Every event received."""

    def __call__(self, event: Event) -> None:
        """Record ``event`` (the listener protocol)."""
        self.events.append(event)

    def of_type(self, kind: type[E]) -> list[E]:
        """Return the captured events of one type, in order."""
        return [event for event in self.events if isinstance(event, kind)]
