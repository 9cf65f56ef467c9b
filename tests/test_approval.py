"""Human approval: tasks that wait for a person, durably, from the CLI and from Python.

Every run goes through the real Anthropic client against the local simulator (the CLI's
``--offline``), and the store is the SQLite file a user's home holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Engine, Plan, Task, Workflow
from orchestrator.approval import ApprovalDecision, ApprovalRequest, decide
from orchestrator.cli import main
from orchestrator.exceptions import UserError
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.results import RunStatus
from orchestrator.store import SQLiteStore, StoreListener
from orchestrator.testing import TestModel
from orchestrator_sim import SimConfig, serve


def _plan(path: Path) -> Path:
    tasks = [
        {"id": "draft", "instruction": "Draft the release announcement.", "approve": "after",
         "max_output_tokens": 128},
        {"id": "send", "instruction": "Write the email that sends the announcement.",
         "depends_on": ["draft"], "approve": "before", "max_output_tokens": 128},
        {"id": "other", "instruction": "List 2 uses of a heap.", "max_output_tokens": 64},
    ]  # fmt: skip
    path.write_text(json.dumps({"goal": "release", "tasks": tasks}))
    return path


def _json(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def _model_attempts(result: dict[str, Any], node_id: str) -> list[dict[str, Any]]:
    node = next(n for n in result["nodes"] if n["id"] == node_id)
    return [a for a in node["attempts"] if a["tier"] != "human"]


def test_a_run_waits_durably_for_approval_and_resume_reruns_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, home = _plan(tmp_path / "plan.json"), ["--home", str(tmp_path)]
    assert main(["run", "--plan", str(plan), "--offline", "--json", *home]) == 3  # waiting
    first = _json(capsys)
    run_id = first["run_id"]
    assert first["status"] == "waiting"
    statuses = {n["id"]: n["status"] for n in first["nodes"]}
    assert statuses == {"draft": "waiting", "send": "not_run", "other": "succeeded"}
    draft = next(n for n in first["nodes"] if n["id"] == "draft")
    assert draft["output"]  # the answer that waits is kept

    # A rejection is feedback: the answer is re-done one tier up, which waits again.
    assert main(["approve", run_id, "draft", "--reject", "one paragraph, not three", *home]) == 0
    assert main(["runs", "--json", *home]) == 0
    (listed,) = _json(capsys)
    assert listed["cost_usd"] == first["cost_usd"]  # deciding costs nothing
    assert main(["resume", run_id, "--offline", "--json", *home]) == 3
    second = _json(capsys)
    redone = _model_attempts(second, "draft")
    assert [a["tier"] for a in redone] == ["haiku", "sonnet"]
    assert "one paragraph, not three" in redone[1]["route_reason"]
    assert redone[0]["verdict"]["verifier"] == "approval"  # the rejected answer, as rejected
    assert len(_model_attempts(second, "other")) == 1  # never run again

    assert main(["approve", run_id, "draft", *home]) == 0
    assert main(["resume", run_id, "--offline", "--json", *home]) == 3  # `send` waits, before
    third = _json(capsys)
    assert _model_attempts(third, "draft") == redone  # approved as it stood: not re-run
    assert next(n for n in third["nodes"] if n["id"] == "send")["status"] == "waiting"
    assert _model_attempts(third, "send") == []  # nothing ran before approval

    assert main(["approve", run_id, "send", *home]) == 0
    assert main(["resume", run_id, "--offline", "--json", *home]) == 0
    done = _json(capsys)
    assert done["status"] == "succeeded"
    assert len(_model_attempts(done, "send")) == 1
    assert done["cost_usd"] > third["cost_usd"]


def test_approving_a_task_that_does_not_wait_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, home = _plan(tmp_path / "plan.json"), ["--home", str(tmp_path)]
    assert main(["run", "--plan", str(plan), "--offline", "--json", *home]) == 3
    run_id = _json(capsys)["run_id"]
    assert main(["approve", run_id, "other", *home]) == 2
    assert "task 'other' of run" in capsys.readouterr().err
    assert main(["approve", run_id, "ghost", *home]) == 2
    assert "has no task 'ghost'" in capsys.readouterr().err
    assert main(["approve", "run_nope", "draft", *home]) == 2
    assert "no run 'run_nope'" in capsys.readouterr().err


@pytest.mark.anyio
async def test_an_approver_answers_as_the_run_goes_and_a_rejection_escalates() -> None:
    asked: list[ApprovalRequest] = []

    async def approver(request: ApprovalRequest) -> ApprovalDecision:
        asked.append(request)
        if request.when == "after" and request.tier == "haiku":
            return ApprovalDecision(approved=False, reason="name the version")
        return ApprovalDecision(approved=True)

    plan = Plan(goal="release", tasks=[
        Task(id="draft", instruction="Draft the release announcement.", approve="after"),
        Task(id="send", instruction="Write the email.", depends_on=("draft",), approve="before"),
    ])  # fmt: skip
    async with serve(SimConfig(seed=1, time_scale=0)) as sim:
        client = AnthropicClient(base_url=sim.base_url, api_key="offline-test")
        async with client:
            result = await Engine(client, approver=approver).run(plan)
    assert result.status is RunStatus.SUCCEEDED
    assert [(r.task_id, r.when, r.tier) for r in asked] == [
        ("draft", "after", "haiku"), ("draft", "after", "sonnet"), ("send", "before", None),
    ]  # fmt: skip
    assert asked[0].output  # the approver sees the answer it judges
    draft = result.node("draft")
    assert [a.tier for a in draft.attempts] == ["haiku", "human", "sonnet", "human"]
    assert draft.attempts[0].verdict is not None
    assert not draft.attempts[0].verdict.passed
    assert "name the version" in draft.attempts[2].route_reason
    assert draft.output
    assert draft.final_tier == "sonnet"
    assert all(a.cost_usd == 0 for a in draft.attempts if a.tier == "human")


@pytest.mark.anyio
async def test_a_workflow_task_waits_before_it_runs_until_decided_in_the_store(
    tmp_path: Path,
) -> None:
    wf = Workflow("ship")
    ran: list[str] = []

    @wf.task(approve="before")
    def deploy() -> str:
        ran.append("deploy")
        return "deployed"

    store = await SQLiteStore.open(tmp_path / "runs.db")
    try:
        engine = Engine(TestModel(), listeners=[StoreListener(store)])
        first = await engine.run(wf)
        assert first.status is RunStatus.WAITING
        assert not ran
        await decide(store, first.run_id, "deploy")
        stored = await store.load_run(first.run_id)
        resumed = await engine.prepare(wf, resume=stored).execute()
        with pytest.raises(UserError, match="not waiting for approval"):
            await decide(store, first.run_id, "deploy")  # decided and run: nothing waits
    finally:
        await store.aclose()
    assert resumed.status is RunStatus.SUCCEEDED
    assert ran == ["deploy"]
    assert resumed.node("deploy").output == "deployed"
