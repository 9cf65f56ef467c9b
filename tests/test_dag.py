"""Graph checks of a plan: validate_plan reports every problem at once, each naming its task."""

from __future__ import annotations

import itertools
import re
from typing import Any

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import (
    Plan,
    PlanProblem,
    PlanValidationError,
    SchemaSpec,
    Task,
    parse_plan,
    validate_plan,
)
from orchestrator.dag import plan_problems

FAST = settings(max_examples=100, deadline=None)


def task(task_id: str, *deps: str, **fields: Any) -> Task:
    return Task(id=task_id, instruction=f"do {task_id}", depends_on=list(deps), **fields)


def plan(*tasks: Task, **fields: Any) -> Plan:
    return Plan(goal="reach the goal", tasks=list(tasks), **fields)


def problems_of(p: Plan, **kwargs: Any) -> tuple[PlanProblem, ...]:
    with pytest.raises(PlanValidationError) as info:
        validate_plan(p, **kwargs)
    assert info.value.problems, "a PlanValidationError must list its problems"
    return info.value.problems


def cycle_path(message: str) -> list[str]:
    """The task ids of ``... cycle: a -> b -> a`` (the closing repeat included)."""
    match = re.search(r"cycle: (.+)$", message)
    assert match, message
    return match.group(1).split(" -> ")


def rotations(cycle: list[str]) -> set[str]:
    return {" -> ".join([*cycle[i:], *cycle[:i], cycle[i]]) for i in range(len(cycle))}


# --- the graph of a valid plan ----------------------------------------------------------


def test_valid_plan_returns_graph_from_dependency_to_dependent() -> None:
    a, b, c, d = task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c")
    graph = validate_plan(plan(d, c, b, a), known_tools=[], max_tasks=4)
    assert isinstance(graph, nx.DiGraph)
    assert set(graph.nodes) == {"a", "b", "c", "d"}
    assert set(graph.edges) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}
    assert graph.nodes["d"]["task"] is d
    assert graph.nodes["a"]["task"] is a
    assert next(iter(nx.topological_sort(graph))) == "a"


def test_single_task_plan_is_valid() -> None:
    only = task("only")
    graph = validate_plan(plan(only))
    assert list(graph.nodes) == ["only"]
    assert graph.number_of_edges() == 0


def test_plan_problems_is_empty_for_a_valid_plan() -> None:
    assert plan_problems(plan(task("a"), task("b", "a"))) == []


# --- each problem on its own -------------------------------------------------------------


def test_duplicate_ids() -> None:
    (problem,) = problems_of(plan(task("a"), task("b"), task("a")))
    assert problem.task_id == "a"
    assert "2 tasks" in problem.message
    assert "unique" in problem.message


def test_unknown_dependency() -> None:
    (problem,) = problems_of(plan(task("a"), task("b", "a", "ghost")))
    assert problem.task_id == "b"
    assert "unknown task 'ghost'" in problem.message


def test_self_dependency() -> None:
    (problem,) = problems_of(plan(task("a"), task("loop", "a", "loop")))
    assert problem.task_id == "loop"
    assert "itself" in problem.message
    assert "task 'loop': depends on itself" in str(problem)


def test_repeated_dependency() -> None:
    (problem,) = problems_of(plan(task("a"), task("b", "a", "a")))
    assert problem.task_id == "b"
    assert "'a' 2 times" in problem.message


def test_cycle_message_shows_the_path() -> None:
    # Edges run dependency -> dependent: b needs a, c needs b, a needs c.
    (problem,) = problems_of(plan(task("a", "c"), task("b", "a"), task("c", "b")))
    assert problem.task_id in {"a", "b", "c"}
    assert "cycle" in problem.message
    shown = " -> ".join(cycle_path(problem.message))
    assert shown in rotations(["a", "b", "c"])


def test_cycle_does_not_swallow_tasks_outside_it() -> None:
    p = plan(task("root"), task("x", "root", "y"), task("y", "x"), task("leaf", "y"))
    (problem,) = problems_of(p)
    assert set(cycle_path(problem.message)) == {"x", "y"}


def test_two_separate_cycles_are_both_reported() -> None:
    p = plan(
        task("a", "b"),
        task("b", "a"),
        task("ok"),
        task("x", "z"),
        task("y", "x"),
        task("z", "y"),
    )
    problems = problems_of(p)
    assert len(problems) == 2
    assert all("cycle" in problem.message for problem in problems)
    cycles = sorted(set(cycle_path(problem.message)) for problem in problems)
    assert cycles == [{"a", "b"}, {"x", "y", "z"}]
    for problem in problems:
        assert problem.task_id in cycle_path(problem.message)


def test_cycle_through_a_self_dependent_task_shows_the_real_cycle() -> None:
    problems = problems_of(plan(task("a", "a", "b"), task("b", "a")))
    assert any(p.task_id == "a" and "itself" in p.message for p in problems)
    (cycle,) = [p for p in problems if "cycle" in p.message]
    assert set(cycle_path(cycle.message)) == {"a", "b"}


def test_unknown_tool_names_the_tool_and_the_known_ones() -> None:
    p = plan(task("fetch", tools=["web_search", "teleport"]))
    (problem,) = problems_of(p, known_tools={"web_search", "calculator"})
    assert problem.task_id == "fetch"
    assert "unknown tool 'teleport'" in problem.message
    assert "calculator" in problem.message
    assert "web_search" in problem.message


def test_unknown_tool_when_no_tool_is_known() -> None:
    (problem,) = problems_of(plan(task("t", tools=["shell"])), known_tools=[])
    assert "'shell'" in problem.message
    assert "none" in problem.message


def test_tools_are_not_checked_without_known_tools() -> None:
    validate_plan(plan(task("t", tools=["anything"])))


def test_empty_plan() -> None:
    (problem,) = problems_of(plan())
    assert problem.task_id is None
    assert "no tasks" in problem.message


def test_too_many_tasks() -> None:
    p = plan(task("a"), task("b"), task("c"))
    validate_plan(p, max_tasks=3)
    (problem,) = problems_of(p, max_tasks=2)
    assert problem.task_id is None
    assert "3 tasks" in problem.message
    assert "at most 2" in problem.message


def test_output_task_not_in_plan() -> None:
    validate_plan(plan(task("a"), task("b", "a"), output_task="a"))
    (problem,) = problems_of(plan(task("a"), output_task="summary"))
    assert problem.task_id is None
    assert "'summary'" in problem.message
    assert "output_task" in problem.message


def test_schema_verifier_without_output_schema() -> None:
    (problem,) = problems_of(plan(task("s", verify=[SchemaSpec()])))
    assert problem.task_id == "s"
    assert "'schema' verifier" in problem.message
    assert "output_schema" in problem.message


def test_schema_verifier_with_output_schema_is_valid() -> None:
    validate_plan(plan(task("s", verify=[SchemaSpec()], output_schema={"type": "object"})))


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "nonsense"},
        {"type": "object", "required": "name"},
        {"pattern": "("},
        {"minLength": -1},
    ],
)
def test_invalid_json_schema(schema: dict[str, Any]) -> None:
    (problem,) = problems_of(plan(task("js", output_schema=schema)))
    assert problem.task_id == "js"
    assert "not a valid JSON Schema" in problem.message


def test_unhashable_dollar_schema_is_a_plan_problem() -> None:
    (problem,) = problems_of(plan(task("js", output_schema={"$schema": ["draft-07"]})))
    assert problem.task_id == "js"


def test_all_problems_are_reported_at_once() -> None:
    p = plan(
        task("dup"),
        task("dup"),
        task("needs_ghost", "ghost"),
        task("tooled", tools=["laser"]),
        task("checked", verify=[SchemaSpec()]),
    )
    problems = problems_of(p, known_tools=["search"])
    assert len(problems) == 4
    by_task = {problem.task_id: problem.message for problem in problems}
    assert set(by_task) == {"dup", "needs_ghost", "tooled", "checked"}
    assert "unique" in by_task["dup"]
    assert "ghost" in by_task["needs_ghost"]
    assert "laser" in by_task["tooled"]
    assert "output_schema" in by_task["checked"]


def test_error_text_lists_every_problem_with_its_task() -> None:
    p = plan(task("a", "b"), task("b", "a"), task("c", "nope"), output_task="zz")
    with pytest.raises(PlanValidationError) as info:
        validate_plan(p)
    text = str(info.value)
    assert "3 problems" in text
    assert "task 'c': depends on unknown task 'nope'" in text
    assert "plan: output_task 'zz'" in text
    assert "cycle" in text


def test_parsed_json_plan_validates_into_graph() -> None:
    text = """{"goal": "g", "tasks": [
        {"id": "fetch", "instruction": "fetch"},
        {"id": "sum", "instruction": "summarise", "depends_on": ["fetch"]}
    ]}"""
    graph = validate_plan(parse_plan(text))
    assert list(graph.edges) == [("fetch", "sum")]


# --- properties ----------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn, min_size: int = 1) -> list[tuple[str, list[str]]]:
    """Tasks t0..tN-1, each depending only on earlier ones: always acyclic."""
    size = draw(st.integers(min_value=min_size, max_value=12))
    ids = [f"t{i}" for i in range(size)]
    return [
        (ids[i], draw(st.lists(st.sampled_from(ids[:i]), unique=True)) if i else [])
        for i in range(size)
    ]


def to_plan(spec: list[tuple[str, list[str]]]) -> Plan:
    return plan(*(task(task_id, *deps) for task_id, deps in spec))


@FAST
@given(spec=dags(), data=st.data())
def test_random_dags_validate_with_exactly_the_declared_edges(
    spec: list[tuple[str, list[str]]], data: st.DataObject
) -> None:
    order = data.draw(st.permutations(spec))  # the order of tasks does not matter
    p = to_plan(order)
    graph = validate_plan(p)
    assert set(graph.nodes) == {task_id for task_id, _ in spec}
    assert set(graph.edges) == {(dep, task_id) for task_id, deps in spec for dep in deps}
    assert graph.number_of_edges() == sum(len(deps) for _, deps in spec)
    assert nx.is_directed_acyclic_graph(graph)
    for t in p.tasks:
        assert graph.nodes[t.id]["task"] is t


@FAST
@given(spec=dags(min_size=2), data=st.data())
def test_a_back_edge_always_yields_a_cycle_problem(
    spec: list[tuple[str, list[str]]], data: st.DataObject
) -> None:
    deps = {task_id: list(d) for task_id, d in spec}
    ids = list(deps)
    j = data.draw(st.integers(min_value=1, max_value=len(ids) - 1))
    i = data.draw(st.integers(min_value=0, max_value=j - 1))
    first, last = ids[i], ids[j]
    declared = nx.DiGraph([(d, t) for t, ds in deps.items() for d in ds])
    declared.add_nodes_from(ids)
    if not nx.has_path(declared, first, last):
        deps[last].append(first)  # still acyclic: first is earlier than last
        declared.add_edge(first, last)
    deps[first].append(last)  # closes the cycle first -> ... -> last -> first
    declared.add_edge(last, first)
    in_cycle = next(c for c in nx.strongly_connected_components(declared) if first in c)
    assert last in in_cycle

    problems = problems_of(plan(*(task(t, *d) for t, d in deps.items())))

    (problem,) = problems  # one back edge: one cycle, nothing else wrong
    assert "cycle" in problem.message
    assert problem.task_id in in_cycle
    path = cycle_path(problem.message)
    assert path[0] == path[-1]
    assert set(path) <= in_cycle
    for dep, dependent in itertools.pairwise(path):
        assert declared.has_edge(dep, dependent), (dep, dependent, problem.message)


@FAST
@given(
    data=st.data(),
    size=st.integers(min_value=1, max_value=10),
)
def test_unknown_dependencies_are_reported_for_exactly_the_tasks_that_have_one(
    data: st.DataObject, size: int
) -> None:
    ids = [f"t{i}" for i in range(size)]
    missing = [f"missing-{i}" for i in range(5)]
    deps: dict[str, list[str]] = {}
    for i, task_id in enumerate(ids):
        known = st.sampled_from(ids[:i]) if i else st.nothing()
        deps[task_id] = data.draw(
            st.lists(st.one_of(known, st.sampled_from(missing)), unique=True, max_size=6)
        )
    expected = {(t, d) for t, ds in deps.items() for d in ds if d in missing}

    p = plan(*(task(t, *ds) for t, ds in deps.items()))
    problems = plan_problems(p)

    unknown = [pr for pr in problems if "unknown task" in pr.message]
    assert {pr.task_id for pr in unknown} == {t for t, _ in expected}
    reported = {(pr.task_id, pr.message.split("'")[1]) for pr in unknown}
    assert reported == expected
    assert len(unknown) == len(expected)
    assert len(problems) == len(unknown)  # valid dependencies raise nothing
    if expected:
        with pytest.raises(PlanValidationError):
            validate_plan(p)
    else:
        validate_plan(p)
