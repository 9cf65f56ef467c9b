"""Plans (and broken plans), and the request log."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from pydantic import BaseModel, ConfigDict, Field

from orchestrator_sim import SimConfig, serve

pytestmark = pytest.mark.anyio


class Needs(BaseModel):
    reasoning: int = 0
    coding: int = 0


class DraftTask(BaseModel):
    id: str
    instruction: str
    depends_on: list[str] = Field(default_factory=list)
    needs: Needs = Field(default_factory=Needs)
    tools: list[str] = Field(default_factory=list)
    required_sections: list[str] = Field(default_factory=list)


class PlanDraft(BaseModel):
    model_config = ConfigDict(title="Plan")

    tasks: list[DraftTask]
    output_task: str | None = None


def plan_request(goal: str) -> dict[str, object]:
    return {
        "model": "claude-sonnet-5-5",
        "max_tokens": 4000,
        "system": "You are a planner.",
        "messages": [{"role": "user", "content": f"Goal: {goal}"}],
        "output_config": {
            "format": {"type": "json_schema", "schema": PlanDraft.model_json_schema()}
        },
    }


async def test_plan_fans_out_then_synthesises_then_checks(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(SimConfig(time_scale=0)) as server, make_client(server) as client:
            message = await client.messages.create(**plan_request("Choose a home battery system"))
    plan = PlanDraft.model_validate_json(message.content[0].text)
    ids = [task.id for task in plan.tasks]
    assert ids == ["q1", "q2", "q3", "synthesis", "check"]
    by_id = {task.id: task for task in plan.tasks}
    assert all(by_id[q].depends_on == [] for q in ("q1", "q2", "q3"))
    assert by_id["synthesis"].depends_on == ["q1", "q2", "q3"]
    assert by_id["synthesis"].required_sections
    assert by_id["check"].depends_on == ["synthesis"]
    assert plan.output_task == "synthesis"
    assert by_id["q1"].needs.reasoning == 1
    assert by_id["q1"].needs.coding == 0
    assert "battery" in by_id["q1"].instruction
    assert server.requests[0].kind == "plan"


async def test_broken_plans_come_first_then_a_good_one(make_client) -> None:
    config = SimConfig(time_scale=0, broken_plans=3)
    with anyio.fail_after(10):
        async with serve(config) as server, make_client(server) as client:
            texts = [
                (await client.messages.create(**plan_request("Pick a laptop"))).content[0].text
                for _ in range(4)
            ]
    cycle, unknown, prose, good = texts
    cycle_tasks = {t.id: t for t in PlanDraft.model_validate_json(cycle).tasks}
    assert cycle_tasks["q1"].depends_on == ["check"]  # q1 -> check -> synthesis -> q1
    unknown_tasks = {t.id: t for t in PlanDraft.model_validate_json(unknown).tasks}
    assert "background_notes" in unknown_tasks["synthesis"].depends_on
    with pytest.raises(json.JSONDecodeError):
        json.loads(prose)
    PlanDraft.model_validate_json(good)
    kinds = [record.notes["broken_plan"] for record in server.requests]
    assert kinds == ["cycle", "unknown_dependency", "prose", None]


async def test_request_log_lines(tmp_path: Path, make_client) -> None:
    log = tmp_path / "logs" / "requests.jsonl"
    config = SimConfig(
        time_scale=0, request_log=log, fault_rate=1.0, fault_kinds={"overloaded": 1.0}, seed=1
    )
    with anyio.fail_after(10):
        async with serve(config) as server, make_client(server, max_retries=0) as client:
            with pytest.raises(Exception, match="Overloaded"):
                await client.messages.create(
                    model="claude-haiku-5-5",
                    max_tokens=100,
                    messages=[{"role": "user", "content": "Hi."}],
                )
        async with (
            serve(config.model_copy(update={"fault_rate": 0.0})) as again,
            make_client(again) as client,
        ):
            await client.messages.create(
                model="claude-haiku-5-5",
                max_tokens=100,
                messages=[{"role": "user", "content": "Explain tides. [difficulty=2]"}],
            )
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 2  # appended across servers
    failed, answered = lines
    assert failed["status"] == 529
    assert failed["fault"] == "overloaded"
    assert failed["error_type"] == "overloaded_error"
    assert failed["request_id"] == server.requests[0].request_id
    assert answered["status"] == 200
    assert answered["kind"] == "task"
    assert answered["model"] == "claude-haiku-5-5"
    assert answered["flawed"] is True
    assert answered["difficulty"] == 2
    assert answered["usage"]["output_tokens"] > 0
    assert len(answered["task_hash"]) == 16
    assert answered["time"].endswith("Z") or "+00:00" in answered["time"]


async def test_records_read_like_the_json_lines(make_client) -> None:
    with anyio.fail_after(10):
        async with serve(SimConfig(time_scale=0)) as server, make_client(server) as client:
            await client.messages.count_tokens(
                model="claude-haiku-5-5", messages=[{"role": "user", "content": "Hi."}]
            )
    record = server.requests[0]
    assert record["kind"] == record.get("kind") == "count_tokens"
    assert record.get("no_such_field", "default") == "default"
    with pytest.raises(KeyError):
        record["no_such_field"]
