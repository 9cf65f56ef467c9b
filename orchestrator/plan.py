"""The data a planner produces: a ``Plan`` of ``Task`` s with their ``Needs``.

Everything here is plain, serialisable data (it round-trips through JSON, so an LLM planner
can write it and a plan file can store it). Graph checks (unknown dependencies, cycles,
unknown tools) live in :mod:`orchestrator.dag`; this module only checks the shape of each
field. :func:`parse_plan` turns pydantic's errors into :class:`PlanValidationError` entries
that name the task by its id rather than by its index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.capabilities import CAPABILITY_DIMENSIONS, Needs
from orchestrator.exceptions import PlanProblem, PlanValidationError

__all__ = [
    "CitationsSpec",
    "JudgeSpec",
    "NonEmptySpec",
    "Plan",
    "RequiredSectionsSpec",
    "SchemaSpec",
    "Task",
    "VerifierSpec",
    "parse_plan",
]

TaskId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


class NonEmptySpec(BaseModel):
    """The output is not empty and is not a refusal."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
    kind: Literal["non_empty"] = "non_empty"


class SchemaSpec(BaseModel):
    """The output validates against the task's output schema."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
    kind: Literal["schema"] = "schema"


class RequiredSectionsSpec(BaseModel):
    """The output is Markdown with a heading for each named section."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
    kind: Literal["required_sections"] = "required_sections"
    sections: list[str] = Field(min_length=1)
    """Section titles that must appear as Markdown headings (case-insensitive)."""


class JudgeSpec(BaseModel):
    """Another model judges the output against criteria."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
    kind: Literal["llm_judge"] = "llm_judge"
    criteria: str = "The answer fully and correctly does what the task asks."
    """What the judge checks."""
    tier: str | None = None
    """The tier the judge runs on; ``None`` means one tier above the attempt's."""
    inputs: bool = True
    """Show the judge the inputs the author was given; ``False``: the instruction alone."""


class CitationsSpec(BaseModel):
    """Every cited passage ``[path#n]`` exists in the run's corpus and every quote is in it.

    Checked against the passages the engine was given (``Engine(passages=corpus)``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
    kind: Literal["citations"] = "citations"
    min_citations: int = Field(default=1, ge=0)
    """Fewest distinct passages the answer must cite."""


VerifierSpec = Annotated[
    NonEmptySpec | SchemaSpec | RequiredSectionsSpec | JudgeSpec | CitationsSpec,
    Field(discriminator="kind"),
]
"""A verifier described as data, so that plans written as JSON can carry it."""


_NO_NEEDS = Needs()
"""The default needs, one instance for every task (frozen, so safe to share)."""


class Task(BaseModel):
    """One unit of work: a node of the plan's DAG.

    Frozen, with tuples for its sequences (lists are accepted on input), so a task can be
    shared safely. A plan of 100,000 tasks is held while it runs: fields that need no
    object of their own (empty tuples, the shared default needs) keep memory and the
    garbage collector's work per task low.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    id: TaskId
    """Unique id within the plan (letters, digits, ``_ . : -``)."""
    instruction: str = Field(min_length=1)
    """What to do, in words a model can act on."""
    depends_on: tuple[str, ...] = ()
    """Ids of the tasks whose outputs this one needs."""
    needs: Needs = _NO_NEEDS
    """Capability levels and context size the task needs; routing uses these."""
    tools: tuple[str, ...] = ()
    """Names of the tools the task may call (its allowlist)."""
    output_schema: dict[str, Any] | None = None
    """JSON Schema the output must satisfy; ``None`` for free text."""
    verify: tuple[VerifierSpec, ...] = ()
    """Verifiers run on every attempt's output, in order; the first failure rejects it."""
    max_output_tokens: int | None = Field(default=None, gt=0)
    """Cap on output tokens per model call; ``None`` uses the tier's default."""
    batch: bool | None = None
    """Send this task's model calls in Message Batches (half price, results later):
    ``True`` or ``False`` overrides the run's ``batch`` setting; ``None`` follows it."""
    approve: Literal["before", "after"] | None = None
    """A person approves the task ``before`` it runs, or its answer ``after`` it passed
    verification and before it is accepted; until then the run pauses (``waiting``)."""


class Plan(BaseModel):
    """A goal and the tasks that reach it."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    goal: str = Field(min_length=1)
    """What the whole run is for."""
    tasks: list[Task]
    """The tasks; order does not matter, dependencies do."""
    output_task: str | None = None
    """The task whose output is the run's output; ``None`` means the single sink task."""

    def task(self, task_id: str) -> Task:
        """Return the task with ``task_id``.

        Raises:
            KeyError: If no task has that id.
        """
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(task_id)


def parse_plan(data: Mapping[str, Any] | str | bytes) -> Plan:
    """Parse a plan from a mapping or JSON text, reporting every problem by task id.

    Args:
        data: The plan as a mapping (e.g. loaded from YAML) or as JSON text.

    Returns:
        The parsed plan. Graph checks are :func:`orchestrator.dag.validate_plan`'s job.

    Raises:
        PlanValidationError: Listing every field-level problem, each naming its task.
    """
    try:
        if isinstance(data, str | bytes):
            return Plan.model_validate_json(data)
        return Plan.model_validate(data)
    except ValidationError as exc:
        raw = data if isinstance(data, Mapping) else _loads_or_empty(data)
        raise PlanValidationError(_problems_from(exc, raw)) from None


def _loads_or_empty(text: str | bytes) -> Mapping[str, Any]:
    import json  # noqa: PLC0415  (only needed on the error path)

    try:
        loaded = json.loads(text)
    except (ValueError, RecursionError):  # nested too deep: pydantic has said so already
        return {}
    return loaded if isinstance(loaded, Mapping) else {}


def _problems_from(exc: ValidationError, raw: Mapping[str, Any]) -> list[PlanProblem]:
    problems = []
    tasks = raw.get("tasks")
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        task_id = None
        if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
            task_id = _task_label(tasks, loc[1])
            loc = loc[2:]
        field = ".".join(str(part) for part in loc) or "(whole)"
        problems.append(PlanProblem(task_id, _describe(loc, field, err["type"], err["msg"])))
    return problems


def _describe(loc: list[int | str], field: str, kind: str, message: str) -> str:
    if kind == "extra_forbidden" and len(loc) == 2 and loc[0] == "needs":
        known = ", ".join([*CAPABILITY_DIMENSIONS, "context_tokens"])
        return f"unknown capability {loc[1]!r} (known: {known})"
    if kind == "extra_forbidden":
        return f"{field}: unknown field"
    return f"{field}: {message}"


def _task_label(tasks: object, index: int) -> str:
    if isinstance(tasks, list) and index < len(tasks):
        item = tasks[index]
        if isinstance(item, Mapping) and isinstance(item.get("id"), str):
            return str(item["id"])
    return f"#{index}"
