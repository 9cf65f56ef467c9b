"""Planners: the LLM planner's repair loop, and plan files (JSON and YAML)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import ModelRequest, PlanValidationError, UserError, default_ladder
from orchestrator.planners import LLMPlanner, StaticPlanner, load_plan_file
from orchestrator.testing import FunctionModel

pytestmark = pytest.mark.anyio

VALID = {
    "tasks": [
        {"id": "q1", "instruction": "Look up A", "needs": {"reasoning": 1}},
        {"id": "q2", "instruction": "Look up B", "needs": {"reasoning": 1}},
        {
            "id": "synth",
            "instruction": "Combine",
            "depends_on": ["q1", "q2"],
            "needs": {"reasoning": 2},
            "required_sections": ["Summary"],
        },
    ]
}
CYCLE = {
    "tasks": [
        {"id": "a", "instruction": "x", "depends_on": ["b"]},
        {"id": "b", "instruction": "y", "depends_on": ["a"]},
    ]
}


def scripted(*answers: str) -> FunctionModel:
    queue = list(answers)

    def answer(request: ModelRequest) -> str:
        assert request.purpose == "plan"
        return queue.pop(0)

    return FunctionModel(answer)


async def test_valid_plan_first_time() -> None:
    model = scripted(json.dumps(VALID))
    planner = LLMPlanner(model, default_ladder())
    plan = await planner.plan("compare A and B")
    assert plan.goal == "compare A and B"
    assert [t.id for t in plan.tasks] == ["q1", "q2", "synth"]
    synth = plan.task("synth")
    assert synth.needs.reasoning == 2
    assert [spec.kind for spec in synth.verify] == ["non_empty", "required_sections"]
    assert planner.last_report is not None
    assert planner.last_report.rounds == 1
    assert planner.last_report.tier == "sonnet"  # cheapest tier with reasoning >= 2
    request = model.requests[0]
    assert request.output_schema is not None
    assert request.output_schema["title"] == "Plan"
    assert "reasoning" in request.system
    assert "parallel" in request.system


async def test_repair_loop_fixes_prose_then_cycle() -> None:
    model = scripted(
        "Sure! Here is my plan: first A, then B.", json.dumps(CYCLE), json.dumps(VALID)
    )
    planner = LLMPlanner(model, default_ladder(), max_repairs=2)
    plan = await planner.plan("goal")
    assert len(plan.tasks) == 3
    report = planner.last_report
    assert report is not None
    assert report.rounds == 3
    assert "not JSON" in report.problems[0][0]
    assert any("cycle" in problem for problem in report.problems[1])
    # each repair round carries the previous answer and the problems as text
    third = model.requests[2].messages
    assert [m.role for m in third] == ["user", "assistant", "user", "assistant", "user"]
    assert "cycle" in third[-1].content


async def test_repair_loop_gives_up_with_every_problem_listed() -> None:
    bad = {
        "tasks": [
            {"id": "a", "instruction": "x", "depends_on": ["ghost"], "tools": ["web"]},
            {"id": "b", "instruction": "y", "needs": {"reasoning": 7}},
        ]
    }
    model = scripted(json.dumps(bad), json.dumps(bad))
    with pytest.raises(PlanValidationError) as info:
        await LLMPlanner(model, default_ladder(), max_repairs=1).plan("goal")
    text = str(info.value)
    assert "task 'b': reasoning" in text
    assert len(model.requests) == 2


async def test_unknown_tool_and_too_many_tasks_are_problems() -> None:
    many = {"tasks": [{"id": f"t{i}", "instruction": "x", "tools": ["web"]} for i in range(5)]}
    model = scripted(json.dumps(many))
    with pytest.raises(PlanValidationError) as info:
        await LLMPlanner(model, default_ladder(), max_tasks=3, max_repairs=0).plan("goal")
    messages = [str(p) for p in info.value.problems]
    assert "plan: the plan has 5 tasks; at most 3 allowed" in messages
    assert any("unknown tool 'web'" in m for m in messages)


async def test_planning_is_metered() -> None:
    planner = LLMPlanner(scripted(json.dumps(VALID)), default_ladder(), tier="opus")
    await planner.plan("goal")
    assert planner.last_report is not None
    assert planner.last_report.cost_usd > 0
    assert planner.last_report.tier == "opus"


def test_plan_files_json_and_yaml(tmp_path: Path) -> None:
    data = {"goal": "g", "tasks": [{"id": "a", "instruction": "x"}]}
    (tmp_path / "p.json").write_text(json.dumps(data))
    (tmp_path / "p.yaml").write_text("goal: g\ntasks:\n  - id: a\n    instruction: x\n")
    assert load_plan_file(tmp_path / "p.json") == load_plan_file(tmp_path / "p.yaml")


def test_plan_file_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(UserError, match=r"list\.yaml: a plan file holds a mapping"):
        load_plan_file(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("goal: [unclosed\n")
    with pytest.raises(UserError, match=r"broken\.yaml: not valid YAML"):
        load_plan_file(tmp_path / "broken.yaml")
    (tmp_path / "bad.json").write_text(json.dumps({"goal": "g", "tasks": [{"id": "a"}]}))
    with pytest.raises(UserError, match=r"(?s)bad.json: .*task 'a': instruction: Field required"):
        load_plan_file(tmp_path / "bad.json")


async def test_static_planner_validates_and_regoals(tmp_path: Path) -> None:
    data = {"goal": "g", "tasks": [{"id": "a", "instruction": "x", "tools": ["search"]}]}
    (tmp_path / "p.json").write_text(json.dumps(data))
    plan = await StaticPlanner(tmp_path / "p.json").plan("new goal")
    assert plan.goal == "new goal"
    with pytest.raises(PlanValidationError, match="unknown tool 'search'"):
        await StaticPlanner(tmp_path / "p.json", known_tools=set()).plan()
