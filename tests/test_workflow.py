"""The Python workflow API: functions as tasks, parameter names as dependencies."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from orchestrator import (
    Engine,
    ModelRequest,
    Needs,
    NodeStatus,
    Predicate,
    RunStatus,
    Workflow,
    WorkflowDefinitionError,
)
from orchestrator.testing import FunctionModel, TestModel

pytestmark = pytest.mark.anyio


class Outline(BaseModel):
    title: str
    points: list[str]


async def test_python_and_llm_tasks_in_one_dag() -> None:
    wf = Workflow("release notes")
    seen_threads: list[str] = []

    @wf.task
    def commits(repo: str) -> list[str]:
        seen_threads.append(threading.current_thread().name)
        return [f"{repo}: fix bug", f"{repo}: add feature"]

    @wf.llm(needs=Needs(reasoning=2), output=Outline)
    def outline(commits: list[str]) -> str:
        return "Outline release notes for: " + "; ".join(commits)

    @wf.task
    async def render(outline: Outline, repo: str) -> str:
        return f"# {outline.title} ({repo})\n" + "\n".join(f"- {p}" for p in outline.points)

    prompts: list[str] = []

    def answer(request: ModelRequest) -> str:
        prompts.append(request.messages[0].content)
        return '{"title": "v2", "points": ["fixed a bug", "added a feature"]}'

    result = await Engine(FunctionModel(answer)).run(wf, inputs={"repo": "acme"})
    assert result.status is RunStatus.SUCCEEDED
    assert prompts == ["Outline release notes for: acme: fix bug; acme: add feature"]
    assert result.node("outline").final_tier == "sonnet"  # routed by needs
    assert isinstance(result.node("outline").output, Outline)
    assert result.output == "# v2 (acme)\n- fixed a bug\n- added a feature"
    assert result.output_task == "render"
    assert result.node("render").depends_on == ("outline",)
    assert result.node("commits").final_tier == "python"
    assert seen_threads
    assert seen_threads[0] != threading.current_thread().name  # ran in a worker thread


async def test_predicate_verifier_escalates_llm_task() -> None:
    wf = Workflow("haiku poem")

    @wf.llm(verify=[Predicate(lambda text: text.count("\n") == 2, "a haiku has three lines")])
    def poem() -> str:
        return "Write a haiku about queues."

    model = TestModel("one line", by_tier={"sonnet": "a\nb\nc"})
    result = await Engine(model).run(wf)
    node = result.node("poem")
    assert [a.tier for a in node.attempts] == ["haiku", "sonnet"]
    assert node.attempts[0].verdict is not None
    assert node.attempts[0].verdict.reason == "a haiku has three lines"
    assert "a haiku has three lines" in model.requests[1].messages[0].content


async def test_python_task_output_is_verified_and_a_rejection_fails_the_node() -> None:
    wf = Workflow("checked numbers")

    @wf.task(verify=[Predicate(lambda rows: len(rows) == 3, "expected three rows")])
    def rows() -> list[int]:
        return [1, 2]

    @wf.task(verify=[Predicate(lambda total: total > 0, "total must be positive")])
    def total() -> int:
        return 5

    result = await Engine(TestModel()).run(wf)
    rejected, accepted = result.node("rows"), result.node("total")
    assert rejected.status is NodeStatus.FAILED
    assert rejected.reason == "expected three rows"
    assert rejected.output is None
    assert accepted.status is NodeStatus.SUCCEEDED
    assert accepted.output == 5
    assert accepted.attempts[0].verdict is not None
    assert accepted.attempts[0].verdict.verifier != "none"


async def test_python_task_error_fails_node_and_skips_dependents() -> None:
    wf = Workflow("broken")

    @wf.task
    def load() -> str:
        raise FileNotFoundError("data.csv")

    @wf.task
    def use(load: str) -> str:
        return load

    result = await Engine(TestModel()).run(wf)
    assert result.node("load").status is NodeStatus.FAILED
    assert result.node("load").reason == "FileNotFoundError: data.csv"
    assert result.node("use").status is NodeStatus.SKIPPED


async def test_explicit_depends_on_orders_without_passing_values() -> None:
    wf = Workflow("ordering")
    order: list[str] = []

    @wf.task
    async def migrate() -> None:
        await anyio.lowlevel.checkpoint()
        order.append("migrate")

    @wf.task(depends_on=[migrate])
    def report() -> str:
        order.append("report")
        return "done"

    result = await Engine(TestModel()).run(wf)
    assert order == ["migrate", "report"]
    assert result.node("report").depends_on == ("migrate",)


async def test_defaults_are_used_for_unbound_parameters() -> None:
    wf = Workflow("defaults")

    @wf.task
    def greet(greeting: str = "hello") -> str:
        return greeting

    result = await Engine(TestModel()).run(wf)
    assert result.output == "hello"


def test_task_ref_is_still_the_plain_function() -> None:
    wf = Workflow("callable")

    @wf.llm()
    def ask(topic: str) -> str:
        return f"Tell me about {topic}"

    assert ask("anyio") == "Tell me about anyio"
    assert ask.id == "ask"
    assert wf.task_ids == ["ask"]


def test_duplicate_and_variadic_tasks_are_rejected() -> None:
    wf = Workflow("bad")

    @wf.task
    def a() -> int:
        return 1

    with pytest.raises(WorkflowDefinitionError, match="already has a task named 'a'"):
        wf.task(name="a")(lambda: 2)
    with pytest.raises(WorkflowDefinitionError, match="'rest' is variadic"):

        @wf.task
        def b(*rest: int) -> int:
            return 0


def test_cycle_in_workflow_is_reported_by_name() -> None:
    from orchestrator import PlanValidationError

    wf = Workflow("cycle")

    @wf.task
    def first(second: int) -> int:
        return second

    @wf.task
    def second(first: int) -> int:
        return first

    with pytest.raises(PlanValidationError, match="cycle: first -> second -> first"):
        Engine(TestModel()).prepare(wf)


def _kinds_of_parameters() -> list[Callable[..., Any]]:
    def plain(a, b=1): ...  # type: ignore[no-untyped-def]
    def keyword_only(a, *, b, c=2): ...  # type: ignore[no-untyped-def]
    def positional_only(a, /, b): ...  # type: ignore[no-untyped-def]
    def star_args(a, *rest): ...  # type: ignore[no-untyped-def]
    def star_kwargs(a, b=1, **rest): ...  # type: ignore[no-untyped-def]
    def star_after_keyword(a, *, b=1, **rest): ...  # type: ignore[no-untyped-def]

    @functools.wraps(plain)
    def wrapped(*args, **kwargs): ...  # type: ignore[no-untyped-def]

    return [
        plain,
        keyword_only,
        positional_only,
        star_args,
        star_kwargs,
        star_after_keyword,
        wrapped,
    ]


@pytest.mark.parametrize("function", _kinds_of_parameters(), ids=lambda f: f.__name__)
def test_parameters_are_read_as_inspect_signature_reads_them(function: Callable[..., Any]) -> None:
    from orchestrator.workflow import _parameters, _parameters_of_signature

    def read(reader: Callable[..., Any]) -> Any:
        try:
            return reader("t", function)
        except WorkflowDefinitionError as error:
            return str(error)

    assert read(_parameters) == read(_parameters_of_signature)
