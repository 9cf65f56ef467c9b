"""Plans as data: parse_plan from JSON text and mappings, field-level problems by task id."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator import (
    CAPABILITY_DIMENSIONS,
    JudgeSpec,
    NonEmptySpec,
    Plan,
    PlanProblem,
    PlanValidationError,
    RequiredSectionsSpec,
    SchemaSpec,
    Task,
    UserError,
    parse_plan,
)

KNOWN_NEEDS = [*CAPABILITY_DIMENSIONS, "context_tokens"]


def plan_dict(*tasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"goal": "answer the question", "tasks": list(tasks), **extra}


def task_dict(task_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "instruction": f"do {task_id}", **fields}


def problems_of(data: Any) -> tuple[PlanProblem, ...]:
    with pytest.raises(PlanValidationError) as info:
        parse_plan(data)
    assert isinstance(info.value, UserError)
    return info.value.problems


# --- successful parsing ---------------------------------------------------------------


FULL_PLAN = plan_dict(
    task_dict("search", needs={"tool_use": 2}, tools=["web_search"]),
    task_dict(
        "facts",
        depends_on=["search"],
        needs={"reasoning": 1, "context_tokens": 50_000},
        output_schema={"type": "object", "required": ["facts"]},
        verify=[{"kind": "schema"}],
        max_output_tokens=2000,
    ),
    task_dict(
        "report",
        depends_on=["facts"],
        needs={"reasoning": 3, "coding": 2},
        verify=[
            {"kind": "non_empty"},
            {"kind": "required_sections", "sections": ["Summary", "Sources"]},
            {"kind": "llm_judge", "criteria": "cites sources", "tier": "opus"},
        ],
    ),
    output_task="report",
)


def check_full_plan(plan: Plan) -> None:
    assert plan.goal == "answer the question"
    assert [task.id for task in plan.tasks] == ["search", "facts", "report"]
    assert plan.output_task == "report"
    search, facts, report = plan.tasks
    assert search.needs.tool_use == 2
    assert search.needs.reasoning == 0
    assert search.tools == ("web_search",)
    assert facts.depends_on == ("search",)
    assert facts.needs.context_tokens == 50_000
    assert facts.output_schema == {"type": "object", "required": ["facts"]}
    assert facts.verify == (SchemaSpec(),)
    assert facts.max_output_tokens == 2000
    assert report.needs.levels() == {"reasoning": 3, "long_context": 0, "coding": 2, "tool_use": 0}
    assert report.verify == (
        NonEmptySpec(),
        RequiredSectionsSpec(sections=["Summary", "Sources"]),
        JudgeSpec(criteria="cites sources", tier="opus"),
    )


def test_parse_plan_from_mapping() -> None:
    check_full_plan(parse_plan(FULL_PLAN))


def test_parse_plan_from_json_text() -> None:
    check_full_plan(parse_plan(json.dumps(FULL_PLAN)))


def test_parse_plan_from_json_bytes() -> None:
    check_full_plan(parse_plan(json.dumps(FULL_PLAN).encode()))


def test_plan_round_trips_through_json() -> None:
    plan = parse_plan(FULL_PLAN)
    assert parse_plan(plan.model_dump_json()) == plan


def test_task_defaults() -> None:
    task = parse_plan(plan_dict(task_dict("only"))).tasks[0]
    assert task.depends_on == ()
    assert task.tools == ()
    assert task.verify == ()
    assert task.needs is Task(id="u", instruction="y").needs  # the default, shared
    assert task.output_schema is None
    assert task.max_output_tokens is None
    assert task.needs.levels() == dict.fromkeys(CAPABILITY_DIMENSIONS, 0)
    assert task.needs.context_tokens == 0


def test_plan_task_lookup_by_id() -> None:
    plan = parse_plan(FULL_PLAN)
    assert plan.task("facts").depends_on == ("search",)
    with pytest.raises(KeyError, match="missing"):
        plan.task("missing")


def test_judge_spec_defaults_to_one_tier_above() -> None:
    plan = parse_plan(plan_dict(task_dict("t", verify=[{"kind": "llm_judge"}])))
    (spec,) = plan.tasks[0].verify
    assert isinstance(spec, JudgeSpec)
    assert spec.tier is None
    assert spec.criteria


def test_task_is_immutable() -> None:
    task = Task(id="t", instruction="x")
    with pytest.raises(ValueError, match="frozen"):
        task.id = "u"  # type: ignore[misc]


# --- field-level problems, each naming the task by id ------------------------------------


def test_unknown_capability_names_task_capability_and_known_ones() -> None:
    data = plan_dict(task_dict("first"), task_dict("second", needs={"speed": 2}))
    (problem,) = problems_of(data)
    assert problem.task_id == "second"  # the id, not the index "#1"
    assert "unknown capability 'speed'" in problem.message
    for name in KNOWN_NEEDS:
        assert name in problem.message
    assert "task 'second'" in str(problem)


def test_unknown_capability_from_json_text_names_task_id() -> None:
    text = json.dumps(plan_dict(task_dict("a"), task_dict("b", needs={"creativity": 1})))
    (problem,) = problems_of(text)
    assert problem.task_id == "b"
    assert "creativity" in problem.message
    assert "reasoning" in problem.message


@pytest.mark.parametrize(
    ("needs", "field", "words"),
    [
        ({"reasoning": 4}, "needs.reasoning", "less than or equal to 3"),
        ({"coding": -1}, "needs.coding", "greater than or equal to 0"),
        ({"tool_use": 99}, "needs.tool_use", "less than or equal to 3"),
        ({"context_tokens": -5}, "needs.context_tokens", "greater than or equal to 0"),
    ],
)
def test_need_out_of_range(needs: dict[str, int], field: str, words: str) -> None:
    (problem,) = problems_of(plan_dict(task_dict("t0"), task_dict("bad", needs=needs)))
    assert problem.task_id == "bad"
    assert field in problem.message
    assert words in problem.message


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_every_level_in_range_is_accepted(level: int) -> None:
    needs = dict.fromkeys(CAPABILITY_DIMENSIONS, level)
    task = parse_plan(plan_dict(task_dict("t", needs=needs))).tasks[0]
    assert task.needs.levels() == needs


def test_every_field_problem_is_reported_at_once() -> None:
    data = plan_dict(
        task_dict("a", needs={"reasoning": 7}),
        task_dict("b", needs={"speed": 1}),
        {"id": "c"},  # no instruction
        task_dict("d", colour="red"),
    )
    problems = problems_of(data)
    assert len(problems) == 4
    assert [p.task_id for p in problems] == ["a", "b", "c", "d"]
    assert "needs.reasoning" in problems[0].message
    assert "speed" in problems[1].message
    assert "instruction" in problems[2].message
    assert "colour" in problems[3].message
    assert "unknown field" in problems[3].message


def test_error_message_counts_and_lists_problems() -> None:
    with pytest.raises(PlanValidationError) as info:
        parse_plan(
            plan_dict(task_dict("a", needs={"reasoning": 7}), task_dict("b", needs={"x": 1}))
        )
    text = str(info.value)
    assert "2 problems" in text
    assert "task 'a'" in text
    assert "task 'b'" in text


def test_task_without_valid_id_is_labelled_by_index() -> None:
    (problem,) = problems_of(plan_dict(task_dict("ok"), {"instruction": "no id"}))
    assert problem.task_id == "#1"
    assert "id" in problem.message


@pytest.mark.parametrize("bad_id", ["has space", "", "slash/no"])
def test_task_id_shape_is_checked(bad_id: str) -> None:
    (problem,) = problems_of(plan_dict(task_dict(bad_id)))
    assert problem.message.startswith("id:")


def test_plan_level_field_problem_has_no_task() -> None:
    (problem,) = problems_of({"tasks": [task_dict("a")]})
    assert problem.task_id is None
    assert "goal" in problem.message
    assert str(problem).startswith("plan:")


def test_unknown_verifier_kind_is_reported_for_its_task() -> None:
    (problem,) = problems_of(plan_dict(task_dict("v", verify=[{"kind": "vibes"}])))
    assert problem.task_id == "v"
    assert "verify" in problem.message


def test_required_sections_needs_at_least_one_section() -> None:
    data = plan_dict(task_dict("r", verify=[{"kind": "required_sections", "sections": []}]))
    (problem,) = problems_of(data)
    assert problem.task_id == "r"
    assert "sections" in problem.message


def test_max_output_tokens_must_be_positive() -> None:
    (problem,) = problems_of(plan_dict(task_dict("m", max_output_tokens=0)))
    assert problem.task_id == "m"
    assert "max_output_tokens" in problem.message


@pytest.mark.parametrize(
    "text",
    ["{not json", '{"goal": "g", "tasks": [', "", b"\xff\xfe"],
    ids=["bad-key", "truncated", "empty", "not-utf8"],
)
def test_broken_json_text_is_a_plan_validation_error(text: str | bytes) -> None:
    (problem,) = problems_of(text)
    assert problem.task_id is None
    assert "json" in problem.message.lower()


def test_json_that_is_not_an_object() -> None:
    (problem,) = problems_of("[1, 2, 3]")
    assert problem.task_id is None
    assert "object" in problem.message
