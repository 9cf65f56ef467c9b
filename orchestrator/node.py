"""A runnable node: a :class:`~orchestrator.plan.Task` plus how to run and verify it.

A task is data; a node adds behaviour. An LLM node turns its inputs into a prompt (by
default the task's instruction followed by the outputs of its dependencies) and runs on a
routed tier. A Python node calls a function with its inputs and runs locally. Planners
produce tasks that become LLM nodes through :func:`node_from_task`; the Python workflow API
builds nodes of both kinds directly.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from orchestrator.citations import PassageLookup
from orchestrator.plan import Task
from orchestrator.verify import RequiredSections, Verifier, verifiers_from_specs
from orchestrator.wire import inputs_prompt, sections_prompt

__all__ = ["Node", "Prompt", "default_prompt", "node_from_task", "render_value", "same_answer"]


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt in two parts: material other tasks read too, then this task's own words.

    Return one from a workflow's LLM task to have the engine mark a prompt-cache
    breakpoint after ``shared`` (when it is long enough for the tier's cache): tasks whose
    prompts start with the same ``shared`` text (a document, a corpus extract, upstream
    outputs) then read it from the cache instead of paying for it each time; those ready
    together wait for the first call that writes it. Use it for material several tasks
    read: a prefix written and never read costs 1.25x its input price.

    Attributes:
        shared: What comes first, word for word the same in the tasks that share it.
        task: This task's instruction, after it.
    """

    shared: str
    task: str

    def __str__(self) -> str:
        return f"{self.shared}\n\n{self.task}"


PromptBuilder = Callable[[Mapping[str, Any]], "str | Prompt"]
"""Builds an LLM node's prompt from its arguments (by parameter name)."""


@dataclass(frozen=True, slots=True)
class Node:
    """A task with its behaviour.

    Attributes:
        task: The task (id, needs, dependencies, tools...).
        verifiers: Checks every attempt's output must pass, in order.
        prompt: For an LLM node, builds the prompt from the arguments.
        function: For a Python node, the function to call with the arguments.
        output_type: A pydantic model the output is parsed into (LLM nodes).
        arguments: Parameter name -> source, where a source is a dependency's task id or
            the name of a run input. Plan nodes take every dependency under its own id.
    """

    task: Task
    verifiers: tuple[Verifier, ...]
    prompt: PromptBuilder | None = None
    function: Callable[..., Any] | None = None
    output_type: type[BaseModel] | None = None
    arguments: Mapping[str, str] = field(default_factory=dict)

    is_async: bool = field(init=False, repr=False, compare=False)
    """Whether ``function`` is a coroutine function (computed once, not per call)."""

    def __post_init__(self) -> None:
        is_async = self.function is not None and inspect.iscoroutinefunction(self.function)
        object.__setattr__(self, "is_async", is_async)  # frozen: set once, here

    @property
    def is_python(self) -> bool:
        """Whether the node runs a local Python function instead of a model."""
        return self.function is not None

    def build_prompt(self, arguments: Mapping[str, Any]) -> str:
        """Return the prompt for an LLM node."""
        return self.build_turn(arguments)[0]

    def build_turn(self, arguments: Mapping[str, Any]) -> tuple[str, int]:
        """The prompt, and how many of its first characters a :class:`Prompt` shares (0).

        A prompt ends with the sections the node's :class:`RequiredSections` checks want
        (:func:`~orchestrator.wire.sections_prompt`), unless it names them all already:
        the model is told what the check will look for.
        """
        sections = [
            s for v in self.verifiers if isinstance(v, RequiredSections) for s in v.sections
        ]
        if self.prompt is None:
            return sections_prompt(default_prompt(self.task, arguments), sections), 0
        built = self.prompt(arguments)
        if isinstance(built, Prompt):
            return sections_prompt(str(built), sections), len(built.shared) + 2
        return sections_prompt(built, sections), 0


def node_from_task(
    task: Task,
    output_type: type[BaseModel] | None = None,
    *,
    passages: PassageLookup | None = None,
) -> Node:
    """Make an LLM node from a planned task, with its verifier chain from the specs.

    ``passages`` is the corpus that ``citations`` verifier specs check against.
    """
    return Node(
        task=task,
        verifiers=tuple(verifiers_from_specs(task, output_type, passages=passages)),
        output_type=output_type,
        arguments={dep: dep for dep in task.depends_on},
    )


def default_prompt(task: Task, arguments: Mapping[str, Any]) -> str:
    """The instruction, then each dependency's output under its task id."""
    if not arguments:
        return task.instruction
    return inputs_prompt(task.instruction, ((n, render_value(v)) for n, v in arguments.items()))


def same_answer(first: Any, second: Any) -> bool:
    """Whether two answers say the same: text up to case and spacing, data by equality."""
    if isinstance(first, str) and isinstance(second, str):
        return " ".join(first.split()).casefold() == " ".join(second.split()).casefold()
    return bool(first == second)


def render_value(value: Any) -> str:
    """Render an output as text for a prompt: strings as-is, models and data as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=2)
    try:
        return json.dumps(value, indent=2, default=str)
    except (TypeError, ValueError):
        return repr(value)
