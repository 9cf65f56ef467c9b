"""Tools that need a person: a call waits before it runs, or its result before the model
reads it; the run pauses durably and ``resume`` goes on from that turn, paying nothing twice.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from orchestrator import Engine, Plan, RunConfig, Task
from orchestrator.approval import ApprovalDecision, ApprovalRequest, decide
from orchestrator.cli import main
from orchestrator.exceptions import UserError
from orchestrator.models.base import ModelRequest, ToolCall
from orchestrator.results import NodeStatus, RunResult, RunStatus
from orchestrator.store import SQLiteStore, StoreListener
from orchestrator.telemetry import Telemetry
from orchestrator.testing import FunctionModel, tool_results
from orchestrator.tools import tool
from orchestrator.tools.errors import ToolDefinitionError

ROOT = Path(__file__).resolve().parent.parent

PLAN = Plan(
    goal="notify",
    tasks=[
        Task(id="notify", instruction="Tell ops the deploy is done.", tools=("send_email",)),
        Task(id="other", instruction="List 2 uses of a heap."),
    ],
)


class Mailer:
    """A tool that records what it sent, and a model that calls it once then answers."""

    def __init__(self, approve: Any = "before") -> None:
        self.sent: list[str] = []

        def send_email(to: str) -> str:
            """Send the deploy email.

            Args:
                to: Who gets it.
            """
            self.sent.append(to)
            return f"sent to {to}"

        self.tool = tool(send_email, approve=approve)
        self.model = FunctionModel(self._answer)

    def _answer(self, request: ModelRequest) -> Any:
        if request.tools:
            results = tool_results(request)
            if not results:
                return ToolCall(id="call_1", name="send_email", arguments={"to": "ops"})
            return f"done ({results[0].content}; error={results[0].is_error})"
        return "a priority queue and heapsort"

    def turns(self, task: str = "notify") -> list[ModelRequest]:
        return [r for r in self.model.requests if r.task_id == task]


async def _run(
    mailer: Mailer, store: SQLiteStore, *, resume: str | None = None, **engine: Any
) -> RunResult:
    built = Engine(mailer.model, tools=[mailer.tool], listeners=[StoreListener(store)], **engine)
    stored = await store.load_run(resume) if resume is not None else None
    return await built.prepare(PLAN, resume=stored).execute()


@pytest.mark.anyio
async def test_a_call_waits_for_approval_and_resume_goes_on_from_that_turn(tmp_path: Path) -> None:
    mailer = Mailer()
    store = await SQLiteStore.open(tmp_path / "runs.db")
    try:
        first = await _run(mailer, store)
        assert first.status is RunStatus.WAITING
        node = first.node("notify")
        assert node.status is NodeStatus.WAITING
        assert mailer.sent == []  # nothing ran before the decision
        assert first.node("other").status is NodeStatus.SUCCEEDED  # the rest went on
        (paused,) = node.attempts
        assert paused.tool_wait is not None
        assert paused.tool_wait.tools == ("send_email",)
        assert paused.calls == 1
        assert paused.cost_usd > 0  # the turn that asked is paid, once

        decision = await decide(store, first.run_id, "notify")
        assert decision.approval == "tool"
        assert decision.approves == paused.number
        resumed = await _run(mailer, store, resume=first.run_id)
    finally:
        await store.aclose()
    assert resumed.status is RunStatus.SUCCEEDED
    assert mailer.sent == ["ops"]  # run once, after approval
    turns = mailer.turns()
    assert len(turns) == 2  # the first turn was not sent again: the second goes on from it
    assert [m.role for m in turns[1].messages] == ["user", "assistant", "user"]
    notify = resumed.node("notify")
    assert notify.output == "done (sent to ops; error=False)"
    assert [a.tier for a in notify.attempts] == ["haiku", "human", "haiku"]
    assert "goes on from the conversation of attempt 1" in notify.attempts[2].route_reason
    assert notify.attempts[2].calls == 1
    assert len(mailer.turns("other")) == 1  # never run again


@pytest.mark.anyio
async def test_a_refused_call_is_feedback_to_the_model_and_never_runs(tmp_path: Path) -> None:
    mailer = Mailer()
    store = await SQLiteStore.open(tmp_path / "runs.db")
    try:
        first = await _run(mailer, store)
        await decide(store, first.run_id, "notify", reject="not on a Friday")
        resumed = await _run(mailer, store, resume=first.run_id)
        with pytest.raises(UserError, match="not waiting for approval"):
            await decide(store, first.run_id, "notify")
    finally:
        await store.aclose()
    assert mailer.sent == []
    [result] = tool_results(mailer.turns()[-1])
    assert result.is_error
    assert "a reviewer refused this call: not on a Friday" in result.content
    assert resumed.node("notify").output == (
        "done (a reviewer refused this call: not on a Friday; error=True)"
    )


@pytest.mark.anyio
async def test_a_result_waits_after_the_tool_ran_and_it_never_runs_again(tmp_path: Path) -> None:
    mailer = Mailer(approve="after")
    store = await SQLiteStore.open(tmp_path / "runs.db")
    try:
        first = await _run(mailer, store)
        assert first.status is RunStatus.WAITING
        assert mailer.sent == ["ops"]  # it ran; its result waits
        wait = first.node("notify").attempts[0].tool_wait
        assert wait is not None
        assert wait.stage == "after"
        assert wait.results[0]["content"] == "sent to ops"
        await decide(store, first.run_id, "notify", reject="wrong list")
        resumed = await _run(mailer, store, resume=first.run_id)
    finally:
        await store.aclose()
    assert mailer.sent == ["ops"]  # not run again on resume
    assert resumed.node("notify").output == (
        "done (a reviewer rejected this result: wrong list; error=True)"
    )


@pytest.mark.anyio
async def test_an_approver_decides_as_the_run_goes(tmp_path: Path) -> None:
    asked: list[ApprovalRequest] = []

    async def approver(request: ApprovalRequest) -> ApprovalDecision:
        asked.append(request)
        return ApprovalDecision(approved=True, reason="fine")

    mailer = Mailer()
    store = await SQLiteStore.open(tmp_path / "runs.db")
    try:
        result = await _run(mailer, store, approver=approver)
    finally:
        await store.aclose()
    assert result.status is RunStatus.SUCCEEDED
    assert mailer.sent == ["ops"]
    (request,) = asked
    assert request.when == "before"
    assert request.tool_calls == (
        {"id": "call_1", "name": "send_email", "arguments": {"to": "ops"}},
    )
    assert request.tier == "haiku"
    notify = result.node("notify")
    assert [(a.tier, a.approval) for a in notify.attempts] == [("haiku", None), ("human", "tool")]
    assert notify.attempts[1].verdict is not None
    assert "approved the tool calls of attempt 1 (send_email): fine" in (
        notify.attempts[1].verdict.reason
    )


@pytest.mark.anyio
async def test_run_config_patterns_gate_tools_that_do_not_ask_themselves(tmp_path: Path) -> None:
    mailer = Mailer(approve=None)
    store = await SQLiteStore.open(tmp_path / "runs.db")
    try:
        ungated = await _run(mailer, store)
        assert ungated.status is RunStatus.SUCCEEDED
        config = RunConfig(approve_tools={"send_*": "before"})
        gated = await _run(mailer, store, config=config)
    finally:
        await store.aclose()
    assert gated.status is RunStatus.WAITING
    assert mailer.sent == ["ops"]  # only the ungated run sent it


def test_a_tool_with_a_bad_approve_value_is_refused_by_name() -> None:
    def ping() -> str:
        """Ping."""
        return "pong"

    with pytest.raises(
        ToolDefinitionError, match="tool 'ping': approve must be 'before' or 'after'"
    ):
        tool(ping, approve="sometimes")  # type: ignore[call-overload]


def test_cli_a_real_mcp_tool_waits_for_approval_then_resume_runs_it_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.json"
    server = f"{sys.executable} {ROOT / 'examples' / 'mcp_server.py'} --notes {notes}"
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "note it", "tasks": [
        {"id": "save", "instruction": "Use add_note to save a note titled deploy saying done.",
         "tools": ["mcp__toolbox__add_note"]},
    ]}))  # fmt: skip
    flags = ["--offline", "--home", str(tmp_path), "--mcp", server, "--json"]
    gated = [*flags, "--approve-tool", "mcp__toolbox__add_*"]
    assert main(["run", "--plan", str(plan), *gated]) == 3  # waiting
    first = json.loads(capsys.readouterr().out, parse_float=Decimal)
    assert first["status"] == "waiting"
    [paused] = first["nodes"][0]["attempts"]
    assert paused["tool_wait"]["tools"] == ["mcp__toolbox__add_note"]
    assert not notes.exists()  # add_note never ran (it writes the file)
    run_id = first["run_id"]

    assert main(["approve", run_id, "save", "--home", str(tmp_path)]) == 0
    assert "approved the tool calls of attempt 1" in capsys.readouterr().err
    assert main(["resume", run_id, *gated]) == 0
    done = json.loads(capsys.readouterr().out, parse_float=Decimal)
    assert done["status"] == "succeeded"
    added = [n for n in json.loads(notes.read_text()).values() if "deploy" in n["text"]]
    assert len(added) == 1  # run once, after the decision
    attempts = done["nodes"][0]["attempts"]
    assert [a["tier"] for a in attempts] == ["haiku", "human", "haiku"]
    assert attempts[0] == paused  # kept as it was: its turn is not paid again
    assert 'add_note gave "note-' in done["nodes"][0]["output"]
    assert done["cost_usd"] == paused["cost_usd"] + attempts[2]["cost_usd"]


@pytest.mark.anyio
async def test_the_paused_attempt_span_says_what_it_waits_for_and_is_no_error() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    mailer = Mailer()
    engine = Engine(mailer.model, tools=[mailer.tool], telemetry=Telemetry(provider))
    result = await engine.run(PLAN)
    assert result.status is RunStatus.WAITING
    node = "orchestrator.node.id"
    [paused] = [
        s for s in spans.get_finished_spans()
        if s.name.startswith("attempt") and (s.attributes or {}).get(node) == "notify"
    ]  # fmt: skip
    attributes = paused.attributes or {}
    assert attributes["orchestrator.attempt.waits_for"] == ("send_email",)
    assert paused.status.status_code is not StatusCode.ERROR
    assert "error.type" not in attributes
