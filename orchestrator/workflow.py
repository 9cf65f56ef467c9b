"""Define workflows in Python: functions are tasks, parameter names are dependencies.

As in Hamilton, a function's parameters name what it needs: a parameter called ``outline``
receives the output of the task ``outline``. A parameter that names no task is a run input,
passed with ``engine.run(workflow, inputs={...})`` (parameters with defaults may be left
out). ``@wf.llm`` functions return a prompt, which runs on the cheapest adequate tier and is
verified and escalated like any planned task; ``@wf.task`` functions are plain Python, run
in a worker thread when synchronous. Both kinds mix freely in one DAG::

    wf = Workflow("Brief on a topic")

    @wf.task
    def sources(topic: str) -> list[str]:
        return [f"{topic} overview", f"{topic} history"]

    @wf.llm(needs=Needs(reasoning=2), output=Brief)
    def brief(topic: str, sources: list[str]) -> str:
        return f"Write a brief on {topic} from: {sources}"

    result = await engine.run(wf, inputs={"topic": "anyio"})
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FunctionType
from typing import Any, Generic, Literal, ParamSpec, TypeVar, cast, overload

from pydantic import BaseModel

from orchestrator.capabilities import Needs
from orchestrator.exceptions import WorkflowDefinitionError
from orchestrator.node import Node, Prompt
from orchestrator.plan import Plan, Task
from orchestrator.verify import NonEmpty, SchemaVerifier, Verifier

__all__ = ["TaskRef", "Workflow"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskRef(Generic[P, R]):
    """A function registered as a task; still callable as the plain function.

    Attributes:
        id: The task id (the function's name unless given).
        function: The decorated function.
    """

    id: str
    function: Callable[P, R]
    kind: str
    needs: Needs
    output_type: type[BaseModel] | None
    verifiers: tuple[Verifier, ...]
    tools: tuple[str, ...]
    depends_on: tuple[str, ...]
    max_output_tokens: int | None
    batch: bool | None = None
    approve: Literal["before", "after"] | None = None
    instruction: str = field(default="")
    parameters: tuple[tuple[str, bool], ...] = field(default=(), repr=False)
    """The function's parameters, in order, each with whether it has a default."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the plain function (handy for testing a prompt builder)."""
        return self.function(*args, **kwargs)


DependencyRef = str | TaskRef[..., Any]


class Workflow:
    """A DAG of Python and LLM tasks defined by decorating functions.

    Args:
        goal: What the workflow is for (the run's goal in results and traces).
        output: The task whose output is the run's output; default: the single sink.
    """

    def __init__(self, goal: str, *, output: DependencyRef | None = None) -> None:
        self.goal = goal
        self._output = output
        self._refs: dict[str, TaskRef[..., Any]] = {}

    @overload
    def task(self, function: Callable[P, R], /) -> TaskRef[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        verify: Sequence[Verifier] = (),
        depends_on: Sequence[DependencyRef] = (),
        approve: Literal["before", "after"] | None = None,
    ) -> Callable[[Callable[P, R]], TaskRef[P, R]]: ...

    def task(  # type: ignore[misc]  # mypy cannot match ParamSpec overloads of decorators
        self,
        function: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        verify: Sequence[Verifier] = (),
        depends_on: Sequence[DependencyRef] = (),
        approve: Literal["before", "after"] | None = None,
    ) -> TaskRef[P, R] | Callable[[Callable[P, R]], TaskRef[P, R]]:
        """Register a plain Python task (sync functions run in a worker thread).

        ``approve``: a person approves it ``before`` it runs, or its result ``after``
        (:mod:`orchestrator.approval`).
        """

        def register(fn: Callable[P, R]) -> TaskRef[P, R]:
            return self._add(
                fn, "python", name=name, needs=Needs(), output_type=None, verify=verify,
                tools=(), depends_on=depends_on, max_output_tokens=None, batch=None,
                approve=approve,
            )  # fmt: skip

        return register(function) if function is not None else register

    def llm(
        self,
        *,
        name: str | None = None,
        needs: Needs | None = None,
        output: type[BaseModel] | None = None,
        verify: Sequence[Verifier] | None = None,
        tools: Sequence[str] = (),
        depends_on: Sequence[DependencyRef] = (),
        max_output_tokens: int | None = None,
        batch: bool | None = None,
        approve: Literal["before", "after"] | None = None,
    ) -> Callable[[Callable[P, str | Prompt]], TaskRef[P, str]]:
        """Register an LLM task: the function returns the prompt.

        A string, or a :class:`~orchestrator.node.Prompt` whose ``shared`` part (material
        other tasks read too) the prompt cache serves.

        Args:
            name: Task id; defaults to the function's name.
            needs: Capability needs that route the task (default: none, the cheapest tier).
            output: A pydantic model the answer must validate into (structured output).
            verify: Verifiers after the schema check; default :class:`NonEmpty`.
            tools: Names of tools the task may call.
            depends_on: Extra dependencies that pass no value (ordering only).
            max_output_tokens: Cap on output tokens per model call.
            batch: Send its calls in Message Batches (half price, results later);
                ``None`` follows the run's ``batch`` setting.
            approve: A person approves it ``before`` it runs, or its answer ``after`` it
                passed verification (:mod:`orchestrator.approval`).
        """

        def register(fn: Callable[P, str | Prompt]) -> TaskRef[P, str]:
            chain = [NonEmpty()] if verify is None else list(verify)
            ref = self._add(
                fn, "llm", name=name, needs=needs or Needs(), output_type=output, verify=chain,
                tools=tools, depends_on=depends_on, max_output_tokens=max_output_tokens,
                batch=batch, approve=approve,
            )  # fmt: skip
            return cast("TaskRef[P, str]", ref)  # what it yields downstream: the answer

        return register

    def _add(
        self,
        fn: Callable[P, R],
        kind: str,
        *,
        name: str | None,
        needs: Needs,
        output_type: type[BaseModel] | None,
        verify: Sequence[Verifier],
        tools: Sequence[str],
        depends_on: Sequence[DependencyRef],
        max_output_tokens: int | None,
        batch: bool | None,
        approve: Literal["before", "after"] | None,
    ) -> TaskRef[P, R]:
        task_id = name or getattr(fn, "__name__", "")
        if not task_id or task_id == "<lambda>":
            raise WorkflowDefinitionError("a task needs a name: use a def, or pass name=...")
        if task_id in self._refs:
            raise WorkflowDefinitionError(
                f"workflow {self.goal!r} already has a task named {task_id!r}"
            )
        parameters = _parameters(task_id, fn)
        doc = _docstring(fn)
        ref = TaskRef(
            id=task_id, function=fn, kind=kind, needs=needs, output_type=output_type,
            verifiers=tuple(verify), tools=tuple(tools),
            depends_on=tuple(d if isinstance(d, str) else d.id for d in depends_on),
            max_output_tokens=max_output_tokens, batch=batch, approve=approve,
            instruction=doc.splitlines()[0] if doc else f"{kind} task {task_id}",
            parameters=parameters,
        )  # fmt: skip
        self._refs[task_id] = ref
        return ref

    def to_plan_and_nodes(self) -> tuple[Plan, list[Node]]:
        """Resolve parameters into dependencies and inputs; return the plan and its nodes."""
        tasks, nodes = [], []
        for ref in self._refs.values():
            arguments = self._arguments(ref)
            deps = [source for source in arguments.values() if source in self._refs]
            deps += [dep for dep in ref.depends_on if dep not in deps]
            task = Task(
                id=ref.id, instruction=ref.instruction, depends_on=tuple(deps), needs=ref.needs,
                tools=ref.tools, max_output_tokens=ref.max_output_tokens, batch=ref.batch,
                approve=ref.approve,
                output_schema=ref.output_type.model_json_schema() if ref.output_type else None,
            )  # fmt: skip
            tasks.append(task)
            nodes.append(_node(ref, task, arguments))
        output = self._output if isinstance(self._output, str | None) else self._output.id
        return Plan(goal=self.goal, tasks=tasks, output_task=output), nodes

    def _arguments(self, ref: TaskRef[..., Any]) -> dict[str, str]:
        refs = self._refs
        return {
            name: name for name, has_default in ref.parameters if name in refs or not has_default
        }

    @property
    def task_ids(self) -> list[str]:
        """Ids of the registered tasks, in definition order."""
        return list(self._refs)


def _node(ref: TaskRef[..., Any], task: Task, arguments: Mapping[str, str]) -> Node:
    verifiers = list(ref.verifiers)
    if ref.output_type is not None:
        verifiers.insert(0, SchemaVerifier(ref.output_type))
    if ref.kind == "python":
        return Node(
            task=task, verifiers=tuple(verifiers), function=ref.function, arguments=arguments
        )
    function = ref.function

    def prompt(values: Mapping[str, Any]) -> str | Prompt:
        built = function(**values)
        return built if isinstance(built, Prompt) else str(built)

    return Node(
        task=task,
        verifiers=tuple(verifiers),
        prompt=prompt,
        output_type=ref.output_type,
        arguments=arguments,
    )


_VARARGS = inspect.CO_VARARGS
_VARKEYWORDS = inspect.CO_VARKEYWORDS


def _parameters(task_id: str, fn: Callable[..., Any]) -> tuple[tuple[str, bool], ...]:
    """``fn``'s parameters as (name, has a default), once checked: inputs go by name.

    A plain function is read from its code object, which is what ``inspect.signature``
    reads too, at a fraction of the cost (a workflow of thousands of tasks registers
    thousands of functions); anything else (a wrapped function, a partial, a callable
    object) goes through ``inspect.signature``.
    """
    if type(fn) is not FunctionType or hasattr(fn, "__wrapped__") or hasattr(fn, "__signature__"):
        return _parameters_of_signature(task_id, fn)
    code = fn.__code__
    names = code.co_varnames
    if code.co_posonlyargcount:
        raise _positional_only(task_id, names[0])
    positional = code.co_argcount
    keyword_only = code.co_kwonlyargcount
    if code.co_flags & _VARARGS:
        raise _variadic(task_id, names[positional + keyword_only])
    if code.co_flags & _VARKEYWORDS:
        raise _variadic(task_id, names[positional + keyword_only])
    first_default = positional - len(fn.__defaults__ or ())
    keyword_defaults = fn.__kwdefaults__ or {}
    return tuple(
        (name, index >= first_default if index < positional else name in keyword_defaults)
        for index, name in enumerate(names[: positional + keyword_only])
    )


def _parameters_of_signature(task_id: str, fn: Callable[..., Any]) -> tuple[tuple[str, bool], ...]:
    parameters = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise _variadic(task_id, param.name)
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise _positional_only(task_id, param.name)
        parameters.append((param.name, param.default is not inspect.Parameter.empty))
    return tuple(parameters)


def _variadic(task_id: str, name: str) -> WorkflowDefinitionError:
    return WorkflowDefinitionError(
        f"task {task_id!r}: parameter {name!r} is variadic; name each input instead"
    )


def _positional_only(task_id: str, name: str) -> WorkflowDefinitionError:
    return WorkflowDefinitionError(
        f"task {task_id!r}: parameter {name!r} is positional-only; inputs are passed by name"
    )


def _docstring(fn: Callable[..., Any]) -> str | None:
    """``inspect.getdoc(fn)``, without its search of base classes for a plain function."""
    if type(fn) is FunctionType:
        doc = fn.__doc__
        return inspect.cleandoc(doc) if isinstance(doc, str) else None
    return inspect.getdoc(fn)
