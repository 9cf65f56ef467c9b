"""Replanning: when tasks fail for good, the planner revises the rest of the plan.

Without it, a node that fails on every tier it may try skips its dependents and the run
ends ``partial``. With ``RunConfig(replan=N)`` (``--replan N``) and a goal whose planner
can revise (:class:`~orchestrator.goal.Goal`'s ``reviser``, the research agent's), the
run asks the planner, at most N times, for a revised plan once nothing else can run:

* the planner is shown the plan as it ran (:func:`brief`): the tasks that succeeded
  (kept, their outputs reused), the ones that failed with what was tried on which tier and
  why (the verifiers' reasons, a reviewer's rejection, an API error), and the ones that
  did not run because of them (as LLMCompiler's joiner and Magentic-One's ledger replan);
* :func:`merge` keeps every task that succeeded exactly as it ran, whatever the revision
  says, and takes the revision's other tasks, fresh; the results of the tasks it replaces
  stay in the run's result (``replaced``), their cost in its cost;
* each revision is a planning round like any other: within the run's budget, recorded,
  shown in the trace and the summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx

from orchestrator.budget import Budget
from orchestrator.events import EventBus, PlanRevised
from orchestrator.exceptions import BudgetExhausted, ModelAPIError, PlanValidationError
from orchestrator.goal import Goal
from orchestrator.node import Node
from orchestrator.plan import Plan
from orchestrator.results import (
    Attempt,
    NodeResult,
    NodeStatus,
    PlanningRecord,
    planning_from_attempts,
)
from orchestrator.wire import BriefTask, revision_brief

__all__ = ["Replanning", "brief", "failed_for_good", "merge"]


def failed_for_good(results: Mapping[str, NodeResult]) -> list[str]:
    """The nodes that failed on every tier they tried (what a revision replaces)."""
    return [node_id for node_id, r in results.items() if r.status is NodeStatus.FAILED]


def brief(plan: Plan, results: Mapping[str, NodeResult]) -> str:
    """What the planner is told of the plan as it ran (a ``wire.revision_brief``)."""
    kept: list[BriefTask] = []
    failed: list[tuple[BriefTask, str]] = []
    not_run: list[BriefTask] = []
    for task in plan.tasks:
        result = results.get(task.id)
        if result is None:
            continue
        told = (task.id, task.instruction, task.depends_on)
        if result.status is NodeStatus.SUCCEEDED:
            kept.append(told)
        elif result.status is NodeStatus.FAILED:
            failed.append((told, _why(result)))
        else:
            not_run.append(told)
    return revision_brief(kept, failed, not_run)


def _why(result: NodeResult) -> str:
    tried = [
        f"{a.tier}: {a.error or (a.verdict.reason if a.verdict else 'no verdict')}"
        for a in result.attempts
        if a.answering or a.approval
    ]
    return "; ".join(tried) or (result.reason or "it failed")


def merge(
    plan: Plan, revised: Plan, results: Mapping[str, NodeResult]
) -> tuple[Plan, list[NodeResult]]:
    """The plan to run on: what succeeded as it ran, the revision's other tasks.

    Returns the merged plan and the results of the tasks it drops or runs afresh (every
    task that did not succeed): they stay in the run's result, as replaced.
    """
    done = {
        task.id: task
        for task in plan.tasks
        if task.id in results and results[task.id].status is NodeStatus.SUCCEEDED
    }
    tasks = [*done.values(), *(task for task in revised.tasks if task.id not in done)]
    ids = {task.id for task in tasks}
    output = next(
        (o for o in (revised.output_task, plan.output_task) if o is not None and o in ids), None
    )
    replaced = [r for node_id, r in results.items() if node_id not in done]
    return Plan(goal=plan.goal, tasks=tasks, output_task=output), replaced


class Replanning:
    """The replanning step of a :class:`~orchestrator.run.Run` (a mixin)."""

    run_id: str
    replan_limit: int
    plan: Plan | None
    results: dict[str, NodeResult]
    budget: Budget
    replans: int
    replaced: list[NodeResult]
    _goal: Goal | None
    _bus: EventBus
    _inputs: dict[str, Any]
    _cancel_requested: bool

    replan_error: str | None
    planning: PlanningRecord | None
    _planning_attempts: list[Attempt]
    _completed: set[str]

    def adopt(self, plan: Plan, nodes: list[Node], graph: nx.DiGraph[str]) -> None:
        """Take a validated plan (the run's)."""
        raise NotImplementedError

    async def _planning_round(self, attempt: Attempt) -> None:
        raise NotImplementedError  # the run's

    def _validated(self, plan: Plan) -> tuple[Plan, list[Node], nx.DiGraph[str]]:
        raise NotImplementedError  # the run's

    def _may_replan(self) -> bool:
        """Whether a revision is due: tasks failed for good, revisions and budget left."""
        goal = self._goal
        return (
            goal is not None and goal.reviser is not None and self.plan is not None
            and self.replans < self.replan_limit and not self.budget.exhausted
            and not self._cancel_requested and bool(failed_for_good(self.results))
        )  # fmt: skip

    async def _revise(self) -> bool:
        """Ask the planner for a revised plan and adopt it; ``False``: it could not."""
        goal, plan = self._goal, self.plan
        assert goal is not None
        assert goal.reviser is not None
        assert plan is not None
        self.replans += 1
        told = brief(plan, self.results)
        try:
            revised = await goal.reviser(goal.text, told, self.budget, self._planning_round)
            merged, replaced = merge(plan, revised, self.results)
            validated = self._validated(merged)
        except (PlanValidationError, ModelAPIError, BudgetExhausted) as exc:
            self.replan_error = str(exc)
            return False
        finally:  # the revision's rounds are planning rounds, in the record and its cost
            wall = self.planning.wall_s if self.planning is not None else 0.0
            self.planning = planning_from_attempts(self._planning_attempts)
            self.planning.wall_s = wall
        for result in replaced:
            del self.results[result.id]  # the revision's tasks run afresh
        self._completed |= self.results.keys()  # what succeeded never runs again
        self.replaced += replaced
        self.adopt(*validated)
        event = PlanRevised(self.run_id, merged, told, tuple(r.id for r in replaced))
        await self._bus.emit(event)
        return True
