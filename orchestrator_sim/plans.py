"""Simulated planning (kept small and isolated; to be refined with the planner's schema).

A plan request (structured output whose schema title is ``Plan``) gets: three independent
sub-questions about the goal's key terms, a ``synthesis`` task depending on all of them
(with required sections), and a ``check`` task depending on the synthesis. Fields are set
by name where the schema has them (``id``, ``instruction``, ``depends_on``,
``required_sections``, ``tools``, ``needs``, ``output_task``); anything else is filled from
the schema. When the system prompt carries a tool catalogue (a line mentioning *tools*
followed by ``- name: description`` lines, as the planner's prompt does), the sub-questions
get every listed tool and ``tool_use`` 1: research tasks search and read.
``SimConfig.broken_plans`` makes the first N plan requests broken, in turn: a dependency
cycle, an unknown dependency, then prose instead of JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.wire import BriefTask
from orchestrator_sim.schema_fill import FillContext, fill, resolve

Revision = tuple[list[BriefTask], list[BriefTask], list[BriefTask]]
"""What a revision brief says: the tasks kept, failed, not run."""

__all__ = ["BROKEN_KINDS", "catalogue_tools", "plan_text"]

BROKEN_KINDS = ("cycle", "unknown_dependency", "prose")
_INSTRUCTION_KEYS = ("instruction", "description", "prompt", "task")
_DEPENDENCY_KEYS = ("depends_on", "dependencies", "deps")
_SYNTHESIS_SECTIONS = ["Summary", "Findings", "Open questions"]
_CATALOGUE_ITEM = re.compile(r"^\s*-\s+([A-Za-z_][\w-]*)\s*:")


def catalogue_tools(system: str) -> list[str]:
    """Tool names listed as ``- name: description`` after a line that mentions tools."""
    names: list[str] = []
    in_catalogue = False
    for line in system.splitlines():
        item = _CATALOGUE_ITEM.match(line)
        if in_catalogue and item:
            names.append(item.group(1))
        elif "tool" in line.lower() and not item:
            in_catalogue = True
        elif in_catalogue and line.strip():
            in_catalogue = False
    return names


def _tasks_property(schema: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    root = resolve(schema, schema)
    for key, raw in (root.get("properties") or {}).items():
        sub = resolve(raw, schema)
        items = sub.get("items")
        if sub.get("type") == "array" and isinstance(items, Mapping):
            item = resolve(items, schema)
            if "id" in (item.get("properties") or {}):
                return key, item
    return None


def _specs(goal: str, terms: list[str]) -> list[tuple[str, str, list[str], int]]:
    topics = [*terms, "background", "options", "risks"][:3]
    specs: list[tuple[str, str, list[str], int]] = [
        (f"q{i}", f"{topic.capitalize()}: {goal} Answer this sub-question from the "
         f"sources, focusing on {topic}.", [], 1)
        for i, topic in enumerate(topics, start=1)
    ]  # fmt: skip
    ids = [spec[0] for spec in specs]
    sections = ", ".join(_SYNTHESIS_SECTIONS)
    specs.append(
        ("synthesis", f"Synthesize the sub-answers into one answer to the goal: {goal}\n"
         f"Required sections: {sections}", ids, 2)
    )  # fmt: skip
    specs.append(
        ("check", "Check the synthesis for gaps and unsupported claims.", ["synthesis"], 2)
    )
    return specs


def _set_first(task: dict[str, Any], keys: tuple[str, ...], value: object) -> None:
    for key in keys:
        if key in task:
            task[key] = value
            return


def _task(
    item: Mapping[str, Any],
    ctx: FillContext,
    spec: tuple[str, str, list[str], int],
    tools: list[str],
) -> Any:
    task_id, instruction, depends_on, level = spec
    tools = tools if not depends_on else []
    task = fill(item, ctx)
    if not isinstance(task, dict):
        return task
    task["id"] = task_id
    _set_first(task, _INSTRUCTION_KEYS, instruction)
    _set_first(task, _DEPENDENCY_KEYS, list(depends_on))
    if "required_sections" in task:
        task["required_sections"] = _SYNTHESIS_SECTIONS if task_id == "synthesis" else []
    if "tools" in task:
        task["tools"] = list(tools)
    needs = task.get("needs")
    if isinstance(needs, dict):
        wanted = {"reasoning": level, "tool_use": 1 if tools else 0}
        for key, value in needs.items():
            if isinstance(value, int) and not isinstance(value, bool):
                needs[key] = wanted.get(key, 0)
    return task


def _break(tasks: list[Any], kind: str) -> None:
    by_id = {task["id"]: task for task in tasks if isinstance(task, dict)}
    if kind == "cycle" and "q1" in by_id:
        _set_first(by_id["q1"], _DEPENDENCY_KEYS, ["check"])
    elif kind == "unknown_dependency" and "synthesis" in by_id:
        _set_first(by_id["synthesis"], _DEPENDENCY_KEYS, ["q1", "q2", "q3", "background_notes"])


def _revised(revision: Revision) -> list[tuple[str, str, list[str], int]]:
    """A revision from the engine's brief.

    The kept tasks as they were, each failed one narrowed (a new id, difficulty 1: a planner
    that asks less of it), the tasks that did not run pointed at the narrowed ones.
    """
    kept, failed, not_run = revision
    renamed = {task_id: f"{task_id}_revised" for task_id, _, _ in failed}

    def moved(deps: Sequence[str]) -> list[str]:
        return [renamed.get(d, d) for d in deps]

    specs = [(task_id, text, list(deps), 1) for task_id, text, deps in kept]
    specs += [
        (renamed[task_id], f"A narrower version of {task_id}, which failed: {text} "
         "[difficulty=1]", moved(deps), 1)
        for task_id, text, deps in failed
    ]  # fmt: skip
    specs += [(task_id, text, moved(deps), 2 if deps else 1) for task_id, text, deps in not_run]
    return specs


def plan_text(
    schema: Mapping[str, Any],
    goal: str,
    ctx: FillContext,
    broken: str | None = None,
    tools: list[str] | None = None,
    *,
    revision: Revision | None = None,
) -> str:
    """Return the plan as the text of the answer (JSON unless ``broken == "prose"``).

    ``revision``: the plan revises one whose tasks failed for good (the engine's brief).
    """
    if broken == "prose":
        return (
            f"Here is a plan for {goal!r}: first look into the main questions one by one, "
            "then bring the answers together, and finally check the result."
        )
    found = _tasks_property(schema)
    instance = fill(schema, ctx)
    if found is None or not isinstance(instance, dict):
        return json.dumps(instance)
    key, item = found
    specs = _specs(goal, list(ctx.terms)) if revision is None else _revised(revision)
    tasks = [_task(item, ctx, spec, tools or []) for spec in specs]
    if broken is not None:
        _break(tasks, broken)
    instance[key] = tasks
    if "output_task" in instance:  # the synthesis (or its revision)
        ids = [t["id"] for t in tasks if isinstance(t, dict)]
        instance["output_task"] = next((i for i in ids if i.startswith("synthesis")), None)
    return json.dumps(instance)
