"""A goal: work a planner turns into a plan *inside* the run.

Planning inside the run means it spends from the run's budget, is recorded (and resumable)
like the rest of the run, and fails as a run does, with its cost. :class:`GoalPlanner` is
what a planner must do for that (the research agent's planner is one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from orchestrator.budget import Budget
from orchestrator.plan import Plan
from orchestrator.results import Attempt

__all__ = ["AttemptHook", "Goal", "GoalPlanner", "GoalReviser"]


class AttemptHook(Protocol):
    """Awaited with a planning round's attempt record whenever it changes."""

    async def __call__(self, attempt: Attempt, /) -> None:
        """Take the round's record (the same object each time it changes)."""
        ...


class GoalPlanner(Protocol):
    """Turns a goal into a plan, spending from ``budget`` and reporting each round.

    It must reserve every model call in ``budget`` (a :class:`~orchestrator.budget.Meter`
    does), report each round's :class:`~orchestrator.results.Attempt` through
    ``on_attempt`` when it starts, when a call is reserved and when it ends, and raise
    :class:`~orchestrator.exceptions.PlanValidationError`,
    :class:`~orchestrator.exceptions.ModelAPIError` or
    :class:`~orchestrator.exceptions.BudgetExhausted` when it cannot plan.
    """

    async def __call__(self, goal: str, budget: Budget, on_attempt: AttemptHook, /) -> Plan:
        """Return the plan for ``goal``."""
        ...


class GoalReviser(Protocol):
    """Revises a plan whose tasks failed for good (see :mod:`orchestrator.replan`).

    Given the goal and a brief of the plan as it ran (:func:`orchestrator.replan.brief`),
    it returns the whole revised plan, spending from ``budget`` and reporting each round,
    as a :class:`GoalPlanner` does.
    """

    async def __call__(
        self, goal: str, brief: str, budget: Budget, on_attempt: AttemptHook, /
    ) -> Plan:
        """Return the revised plan for ``goal``."""
        ...


@dataclass(frozen=True, slots=True)
class Goal:
    """Work that is planned inside the run (see :mod:`orchestrator.goal`).

    Attributes:
        text: The goal.
        planner: What plans it (the research agent's planner, say).
        reviser: What revises the plan when tasks fail for good (``RunConfig.replan``);
            ``None``: the run does not replan.
    """

    text: str
    planner: GoalPlanner
    reviser: GoalReviser | None = None
