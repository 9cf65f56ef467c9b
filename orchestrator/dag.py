"""Validate a :class:`~orchestrator.plan.Plan` into a networkx DiGraph.

Every problem is collected and reported at once, each naming its task, so that a planner
(human or model) can fix them all in one round. Edges point from a dependency to its
dependent: ``a -> b`` means ``b`` needs ``a``'s output.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

import jsonschema
import networkx as nx

from orchestrator.exceptions import PlanProblem, PlanValidationError
from orchestrator.plan import Plan, SchemaSpec, Task

__all__ = ["plan_problems", "validate_plan"]


def validate_plan(
    plan: Plan,
    *,
    known_tools: Collection[str] | None = None,
    max_tasks: int | None = None,
) -> nx.DiGraph[str]:
    """Check a plan and return its dependency graph.

    Args:
        plan: The plan to check.
        known_tools: Tool names that exist; ``None`` skips the tool check.
        max_tasks: Largest number of tasks allowed; ``None`` for no limit.

    Returns:
        A DiGraph whose nodes are task ids (with the task under the ``task`` attribute) and
        whose edges run from each dependency to its dependent.

    Raises:
        PlanValidationError: Listing every problem found.
    """
    graph = _build_graph(plan)
    problems = plan_problems(plan, graph, known_tools=known_tools, max_tasks=max_tasks)
    if problems:
        raise PlanValidationError(problems)
    return graph


def plan_problems(
    plan: Plan,
    graph: nx.DiGraph[str] | None = None,
    *,
    known_tools: Collection[str] | None = None,
    max_tasks: int | None = None,
) -> list[PlanProblem]:
    """Return every problem of ``plan`` (empty when it is valid)."""
    graph = _build_graph(plan) if graph is None else graph
    problems = _plan_level_problems(plan, max_tasks)
    ids = {task.id for task in plan.tasks}
    for task in plan.tasks:
        problems += _task_problems(task, ids, known_tools)
    if not _acyclic(plan, ids):  # the common case costs a pass over the plan, no more
        problems += _cycle_problems(graph)
    return problems


def _build_graph(plan: Plan) -> nx.DiGraph[str]:
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from((task.id, {"task": task}) for task in plan.tasks)
    ids = {task.id for task in plan.tasks}  # not graph.nodes: a cached view, a cycle
    graph.add_edges_from(
        (dep, task.id)
        for task in plan.tasks
        for dep in task.depends_on
        if dep in ids and dep != task.id
    )
    return graph


def _plan_level_problems(plan: Plan, max_tasks: int | None) -> list[PlanProblem]:
    problems = []
    if not plan.tasks:
        problems.append(PlanProblem(None, "the plan has no tasks"))
    if max_tasks is not None and len(plan.tasks) > max_tasks:
        problems.append(
            PlanProblem(None, f"the plan has {len(plan.tasks)} tasks; at most {max_tasks} allowed")
        )
    ids = {task.id for task in plan.tasks}
    if len(ids) < len(plan.tasks):
        for task_id, count in Counter(task.id for task in plan.tasks).items():
            if count > 1:
                problems.append(
                    PlanProblem(task_id, f"the id is used by {count} tasks; ids must be unique")
                )
    if plan.output_task is not None and plan.output_task not in ids:
        problems.append(
            PlanProblem(None, f"output_task {plan.output_task!r} is not a task of the plan")
        )
    return problems


def _task_problems(
    task: Task, ids: set[str], known_tools: Collection[str] | None
) -> list[PlanProblem]:
    problems = []
    for dep in task.depends_on:
        if dep == task.id:
            problems.append(PlanProblem(task.id, "depends on itself"))
        elif dep not in ids:
            problems.append(PlanProblem(task.id, f"depends on unknown task {dep!r}"))
    if len(set(task.depends_on)) < len(task.depends_on):
        for dep, count in Counter(task.depends_on).items():
            if count > 1:
                problems.append(PlanProblem(task.id, f"lists dependency {dep!r} {count} times"))
    if known_tools is not None:
        for tool in task.tools:
            if tool not in known_tools:
                known = ", ".join(sorted(known_tools)) or "none"
                problems.append(PlanProblem(task.id, f"unknown tool {tool!r} (known: {known})"))
    problems += _schema_problems(task)
    return problems


def _schema_problems(task: Task) -> list[PlanProblem]:
    if task.output_schema is None:
        if any(isinstance(spec, SchemaSpec) for spec in task.verify):
            return [PlanProblem(task.id, "has a 'schema' verifier but no output_schema")]
        return []
    try:
        jsonschema.validators.validator_for(task.output_schema).check_schema(task.output_schema)
    except jsonschema.SchemaError as exc:
        return [PlanProblem(task.id, f"output_schema is not a valid JSON Schema: {exc.message}")]
    except (TypeError, ValueError, LookupError) as exc:  # e.g. an unhashable "$schema"
        return [PlanProblem(task.id, f"output_schema is not a valid JSON Schema: {exc}")]
    return []


def _acyclic(plan: Plan, ids: set[str]) -> bool:
    """Whether the dependencies have no cycle (Kahn's algorithm over the plan itself).

    On the plan rather than the graph: networkx's own check caches views on the graph that
    refer back to it, a reference cycle that would keep a finished run's graph alive.
    """
    waiting: dict[str, int] = {}
    dependents: dict[str, list[str]] = {}
    for task in plan.tasks:
        deps = {dep for dep in task.depends_on if dep in ids and dep != task.id}
        waiting[task.id] = len(deps)
        for dep in deps:
            dependents.setdefault(dep, []).append(task.id)
    ready = [task_id for task_id, count in waiting.items() if count == 0]
    done = 0
    while ready:
        done += 1
        for dependent in dependents.get(ready.pop(), ()):
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                ready.append(dependent)
    return done == len(waiting)


def _cycle_problems(graph: nx.DiGraph[str]) -> list[PlanProblem]:
    problems = []
    for component in nx.strongly_connected_components(graph):
        if len(component) < 2:
            continue  # self-loops are never added as edges; they are reported per task
        cycle = [edge[0] for edge in nx.find_cycle(graph.subgraph(component))]
        path = " -> ".join([*cycle, cycle[0]])
        problems.append(PlanProblem(min(component), f"is part of a dependency cycle: {path}"))
    return problems
